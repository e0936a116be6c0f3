"""oxedit: an asyncio SDK for Oxen.ai image editing.

Thousands of edits are enqueued at once and awaited over one shared event stream.
"""

from ._bulk.cost import Estimate as Estimate
from ._bulk.cost import ModelEstimate as ModelEstimate
from ._bulk.requests import BulkResult as BulkResult
from ._bulk.requests import EditRequest as EditRequest
from ._bulk.run import BulkRun as BulkRun
from ._client import Client as Client
from ._config import HubProfile as HubProfile
from ._config import Limits as Limits
from ._config import ReconcilePolicy as ReconcilePolicy
from ._config import Timeouts as Timeouts
from ._engine.job import AsCompleted as AsCompleted
from ._engine.job import Job as Job
from ._exceptions import AmbiguousRequestError as AmbiguousRequestError
from ._exceptions import APIConnectionError as APIConnectionError
from ._exceptions import APIResponseValidationError as APIResponseValidationError
from ._exceptions import APIStatusError as APIStatusError
from ._exceptions import APITimeoutError as APITimeoutError
from ._exceptions import AuthenticationError as AuthenticationError
from ._exceptions import BadRequestError as BadRequestError
from ._exceptions import ClientStateError as ClientStateError
from ._exceptions import ConfigurationError as ConfigurationError
from ._exceptions import DownloadError as DownloadError
from ._exceptions import GenerationCancelled as GenerationCancelled
from ._exceptions import GenerationError as GenerationError
from ._exceptions import GenerationExpired as GenerationExpired
from ._exceptions import GenerationFailed as GenerationFailed
from ._exceptions import InsufficientCreditsError as InsufficientCreditsError
from ._exceptions import InvalidRequestError as InvalidRequestError
from ._exceptions import JobPendingError as JobPendingError
from ._exceptions import JobTimeout as JobTimeout
from ._exceptions import ModelNotFoundError as ModelNotFoundError
from ._exceptions import NotFoundError as NotFoundError
from ._exceptions import OxeditError as OxeditError
from ._exceptions import PermissionDeniedError as PermissionDeniedError
from ._exceptions import RateLimitError as RateLimitError
from ._exceptions import ResponseTooLargeError as ResponseTooLargeError
from ._exceptions import ServerError as ServerError
from ._exceptions import TransportError as TransportError
from ._http.api import ClientStats as ClientStats
from ._http.hooks import JobSettled as JobSettled
from ._http.hooks import RequestInfo as RequestInfo
from ._http.hooks import ResponseInfo as ResponseInfo
from ._http.retry import RetryPolicy as RetryPolicy
from ._models import EditResult as EditResult
from ._models import Generation as Generation
from ._models import Model as Model
from ._resources.history import HistoryEntry as HistoryEntry
from ._resources.history import HistoryPage as HistoryPage
from ._resources.inputs import LargeInlineImageWarning as LargeInlineImageWarning
from ._sync import BulkResults as BulkResults
from ._sync import SyncAsCompleted as SyncAsCompleted
from ._sync import SyncBulkRun as SyncBulkRun
from ._sync import SyncClient as SyncClient
from ._sync import SyncJob as SyncJob
from ._version import __version__ as __version__

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AmbiguousRequestError",
    "AsCompleted",
    "AuthenticationError",
    "BadRequestError",
    "BulkResult",
    "BulkResults",
    "BulkRun",
    "Client",
    "ClientStateError",
    "ClientStats",
    "ConfigurationError",
    "DownloadError",
    "EditRequest",
    "EditResult",
    "Estimate",
    "Generation",
    "GenerationCancelled",
    "GenerationError",
    "GenerationExpired",
    "GenerationFailed",
    "HistoryEntry",
    "HistoryPage",
    "HubProfile",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "Job",
    "JobPendingError",
    "JobSettled",
    "JobTimeout",
    "LargeInlineImageWarning",
    "Limits",
    "Model",
    "ModelEstimate",
    "ModelNotFoundError",
    "NotFoundError",
    "OxeditError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReconcilePolicy",
    "RequestInfo",
    "ResponseInfo",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServerError",
    "SyncAsCompleted",
    "SyncBulkRun",
    "SyncClient",
    "SyncJob",
    "Timeouts",
    "TransportError",
    "__version__",
]
