"""Every default number of oxedit, in one place."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://hub.oxen.ai"
DEFAULT_MODEL = "qwen-image-edit"

# Transport.
DEFAULT_MAX_CONNECTIONS = 64  # in-flight API requests; the rest wait in order, without sockets
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0  # one API request's response
DEFAULT_MAX_DOWNLOADS = 8  # concurrent result downloads per client
DEFAULT_BULK_CONCURRENCY = 256  # generations in flight in `Client.map`

# Event stream: keep-alives come every 15 s, so 45 s of silence means the stream is dead.
STREAM_IDLE_TIMEOUT = 45.0
RECONNECT_BACKOFF_INITIAL = 0.1
RECONNECT_BACKOFF_MAX = 10.0

# Retries of requests that are safe to repeat (GETs, and POSTs answered 429/503).
MAX_RETRIES = 5
RETRY_BACKOFF_INITIAL = 0.25
RETRY_BACKOFF_MAX = 8.0
RETRY_AFTER_MAX = 60.0  # never sleep longer than this on a server's Retry-After

# A POST whose response was lost: how long to let the server settle before asking it whether
# the POST created anything, and how many times to ask.
LOST_RESPONSE_GRACE = 1.0
LOST_RESPONSE_CHECKS = 3

# Pending jobs that see no event for this long are checked through the queue endpoints
# (events can be lost, and cancellations have none); the check runs at most this often.
STALE_AFTER = 120.0
RECONCILE_INTERVAL = 30.0
RECONCILE_CONCURRENCY = 8  # per-id GETs in flight during one reconciliation

# Ids this client enqueued are remembered this long after their enqueue (pending ones always),
# so that a lost enqueue's recovery cannot adopt them.
KNOWN_ID_TTL = 900.0

# Events for ids we do not know (yet): kept for the enqueue response that may follow them.
EARLY_EVENT_LIMIT = 100_000
