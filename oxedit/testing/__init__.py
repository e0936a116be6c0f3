"""Test helpers: the pytest plugin (`oxen_server`, `oxen_client` fixtures) over the local server.

The local server itself is `oxedit.server`; its public names are re-exported here so that a test
suite can import everything it needs from one place.

Example:
    ```python
    from oxedit.testing import Faults, LocalServer

    async with LocalServer(faults=Faults(failure_rate=0.1)) as server:
        print(server.url, server.api_key)
    ```
"""

from ..server import DEFAULT_API_KEY as DEFAULT_API_KEY
from ..server import FAST_RECONCILE as FAST_RECONCILE
from ..server import Duration as Duration
from ..server import Faults as Faults
from ..server import LocalServer as LocalServer
from ..server import ServerStats as ServerStats
from ..server import run_server as run_server

__all__ = [
    "DEFAULT_API_KEY",
    "FAST_RECONCILE",
    "Duration",
    "Faults",
    "LocalServer",
    "ServerStats",
    "run_server",
]
