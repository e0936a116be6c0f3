"""The local Oxen-compatible server: what `oxedit serve` runs, the CLI's embedded default with no
key, and the server a test suite runs its app against (`oxedit.testing` adds the pytest plugin).

Example:
    ```python
    from oxedit.server import Faults, LocalServer

    async with LocalServer(faults=Faults(failure_rate=0.1)) as server:
        print(server.url, server.api_key)
    ```
"""

from ._faults import Duration as Duration
from ._faults import Faults as Faults
from ._server import DEFAULT_API_KEY as DEFAULT_API_KEY
from ._server import FAST_RECONCILE as FAST_RECONCILE
from ._server import LocalServer as LocalServer
from ._server import run_server as run_server
from ._stats import ServerStats as ServerStats

__all__ = [
    "DEFAULT_API_KEY",
    "FAST_RECONCILE",
    "Duration",
    "Faults",
    "LocalServer",
    "ServerStats",
    "run_server",
]
