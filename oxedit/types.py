"""Every public type oxedit returns or accepts, in one module (like `openai.types`).

The classes a program uses every day are also at the top level (`oxedit.Generation`); this
module adds the ones that were returned or accepted without a public home: `Status`,
`BulkStatus`, `ImageInput`, `BulkItem`, `ImageResult`, `UploadStats`, `HttpSettings`,
`SharedPace` (what `Client.share_rate` takes), `Shard` (`Client.map`'s `shard=`).

Example:
    ```python
    from oxedit.types import BulkStatus, Generation, ImageInput

    def describe(gen: Generation) -> str:
        return f"{gen.id}: {gen.status}"
    ```
"""

from ._bulk.cost import Estimate as Estimate
from ._bulk.cost import ModelEstimate as ModelEstimate
from ._bulk.requests import BulkItem as BulkItem
from ._bulk.requests import BulkResult as BulkResult
from ._bulk.requests import BulkStatus as BulkStatus
from ._bulk.requests import EditRequest as EditRequest
from ._bulk.shard import Shard as Shard
from ._config import HubProfile as HubProfile
from ._config import Limits as Limits
from ._config import ReconcilePolicy as ReconcilePolicy
from ._config import Timeouts as Timeouts
from ._engine.ratelimit import SharedPace as SharedPace
from ._http.api import ClientStats as ClientStats
from ._http.hooks import JobSettled as JobSettled
from ._http.hooks import RequestInfo as RequestInfo
from ._http.hooks import ResponseInfo as ResponseInfo
from ._http.retry import RetryPolicy as RetryPolicy
from ._http.sessions import HttpSettings as HttpSettings
from ._models import EditResult as EditResult
from ._models import Generation as Generation
from ._models import ImageResult as ImageResult
from ._models import Model as Model
from ._models import Status as Status
from ._resources.history import HistoryEntry as HistoryEntry
from ._resources.history import HistoryPage as HistoryPage
from ._resources.inputs import ImageInput as ImageInput
from ._resources.upload import UploadStats as UploadStats

__all__ = [
    "BulkItem",
    "BulkResult",
    "BulkStatus",
    "ClientStats",
    "EditRequest",
    "EditResult",
    "Estimate",
    "Generation",
    "HistoryEntry",
    "HistoryPage",
    "HttpSettings",
    "HubProfile",
    "ImageInput",
    "ImageResult",
    "JobSettled",
    "Limits",
    "Model",
    "ModelEstimate",
    "ReconcilePolicy",
    "RequestInfo",
    "ResponseInfo",
    "RetryPolicy",
    "Shard",
    "SharedPace",
    "Status",
    "Timeouts",
    "UploadStats",
]
