"""Every default number of oxedit, in one place."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://hub.oxen.ai"
DEFAULT_MODEL = "qwen-image-edit"

# Transport.
DEFAULT_MAX_CONNECTIONS = 64  # in-flight API requests; the rest wait in order, without sockets
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0  # silence while waiting for one API response
# One API request from start to end, however its bytes trickle in (a server dribbling a byte
# every second never trips the read timeout); a result download gets longer.
DEFAULT_TOTAL_TIMEOUT = 120.0
DEFAULT_DOWNLOAD_TIMEOUT = 300.0
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024  # one server-sent event; a longer one is dropped
DEFAULT_MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024  # one result file; far above any real image
# One API answer, inflated (a gzip bomb of 0.6 MB inflates to gigabytes). A row echoes its
# request, a data-URI input included, so one row may hold a large photo's base64: 32 MiB.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
# A list answer (the queue, a history page, the models) holds many such rows: 256 active rows
# of 2 MB data URIs are 512 MB, legitimately. Past DEFAULT_MAX_RESPONSE_BYTES a list may only
# inflate to RESPONSE_MAX_INFLATION x the bytes that came on the wire (base64 JSON gzips about
# 1.3:1, plain JSON rows 5-20:1, a bomb 1000:1), so a bomb stops there too.
DEFAULT_MAX_LIST_RESPONSE_BYTES = 1024 * 1024 * 1024
RESPONSE_MAX_INFLATION = 100
# Events over max_event_bytes are dropped: the first is logged, then one line with a count
# every this many drops or this many seconds (a server sending only such events would
# otherwise write a warning per event).
DROPPED_EVENTS_LOG_EVERY = 100
DROPPED_EVENTS_LOG_INTERVAL = 60.0
DEFAULT_MAX_DOWNLOADS = 8  # concurrent result downloads per client
DEFAULT_BULK_CONCURRENCY = 256  # generations in flight in `Client.map`
# A batch hashes each local image to identify its item (`_requests.identity`); files up to this
# size are hashed on the event loop (~0.1 ms), larger ones in a thread.
BULK_HASH_INLINE_BYTES = 256 * 1024

# Event stream: keep-alives come every 15 s, so 45 s of silence means the stream is dead.
STREAM_IDLE_TIMEOUT = 45.0
# A (re)connection counts as healthy once a byte came or it stayed open one keep-alive period;
# until then its backoff keeps growing (a stream that answers 200 and closes is no stream).
STREAM_HEALTHY_AFTER = 15.0
# A stream that had been accepted and is then refused (401/403/404) on a reconnect is retried
# this long before the refusal is taken as final: a token service can hiccup.
REFUSED_STREAM_GRACE = 60.0
RECONNECT_BACKOFF_INITIAL = 0.1
RECONNECT_BACKOFF_MAX = 10.0

# The adaptive enqueue rate (see _engine.ratelimit): unpaced until a 429 with a Retry-After of
# a second or more comes with RATE_LIMIT_REFUSALS refusals (itself included) among the last
# RATE_RECENT_ANSWERS answers (or, paced back up near where the limit was found, alone: see
# RATE_NEAR_LIMIT), or until refusals (429/503) reach RATE_REFUSED_SHARE of the
# recent answers (a moving average of weight RATE_EWMA: ~30 answers), then half of what
# succeeded; +RATE_INCREASE enqueues/s every second of successes, halved again at the next such
# refusal.
RATE_INCREASE = 2.0
RATE_DECREASE = 0.5
RATE_MIN = 1.0
RATE_EWMA = 0.03
RATE_REFUSED_SHARE = 0.2
RATE_RECENT_ANSWERS = 8
RATE_LIMIT_REFUSALS = 4
# Paced at this share of the rate where the limit was last found (or above), a single 429 with
# a Retry-After of a second or more is taken for the limit again.
RATE_NEAR_LIMIT = 0.9
# The slow start while unpaced: enqueues in flight at most this many plus one per success so
# far. A burst against a limit it does not know yet then loses at most this many plus the
# account's burst to refusals, not `max_connections`; a healthy run reaches full concurrency
# after a few round trips.
RATE_START_WINDOW = 8

# Retries of requests that are safe to repeat (GETs, and POSTs answered 429/503).
MAX_RETRIES = 5
RETRY_BACKOFF_INITIAL = 0.25
RETRY_BACKOFF_MAX = 8.0
RETRY_AFTER_MAX = 60.0  # never sleep longer than this on a server's Retry-After

# A POST whose response was lost: how long to let the server settle before asking it whether
# the POST created anything; then how long to keep asking (a load balancer that gave up on the
# request does not stop the backend, which may commit the row tens of seconds later), with
# gaps doubling from the grace, at least 1/16 of the window and at most LOST_RESPONSE_MAX_GAP.
# Only then is the POST sent again; a row the lost POST still commits after that is watched
# for (one list of the active rows per LOST_RESPONSE_MAX_GAP) for LOST_RESPONSE_WATCH windows
# more, and cancelled.
LOST_RESPONSE_GRACE = 1.0
LOST_RESPONSE_WINDOW = 30.0
LOST_RESPONSE_MAX_GAP = 5.0
LOST_RESPONSE_WATCH = 4

# When a pending job with no event is checked through the queue endpoints (events can be
# lost, and cancellations have none): first once it is older than LATENCY_MULTIPLE x the p99
# completion latency this client observed for its model, never younger than STALE_FLOOR nor
# older than STALE_AFTER; then again as it ages (each gap half its age), never more than
# RECONCILE_INTERVAL apart.
STALE_FLOOR = 10.0
STALE_AFTER = 60.0
LATENCY_MULTIPLE = 3.0
RECONCILE_INTERVAL = 20.0
LATENCY_WINDOW = 256  # latencies kept per model for its p99
RECONCILE_CONCURRENCY = 8  # per-id GETs in flight during one reconciliation
# Reconciliation picks per-id GETs or one list by the bytes each would cost (`_reconcile_cost`):
# rows echo their request, input images included, so a row is 1 KB or 2 MB. A request costs
# its headers both ways on top of its body; a row is guessed at ROW_BYTES_GUESS until one is
# seen, and the share of checked ids found still active at ACTIVE_SHARE_GUESS.
REQUEST_OVERHEAD_BYTES = 1024
ROW_BYTES_GUESS = 2048
ACTIVE_SHARE_GUESS = 1.0
MAX_RETRY_HOPS = 5  # a cancelled row re-created (kill & retry) is followed this many times
# Rows enqueued by a POST whose response was lost carry the server's clock, in whole seconds.
CLOCK_SLACK = 10.0

# Ids this client enqueued are remembered this long after their enqueue (pending ones always),
# so that a lost enqueue's recovery cannot adopt them.
KNOWN_ID_TTL = 900.0

# Events for ids we do not know (yet): kept, as their raw bytes, while an enqueue that was in
# flight when they came is unanswered (its response may announce them), at most this many and
# `Limits.max_early_event_bytes`, each counted as its length + EARLY_EVENT_OVERHEAD (its id,
# the dict slot and the bytes header). On a shared account most are other processes' jobs.
EARLY_EVENT_LIMIT = 100_000
DEFAULT_MAX_EARLY_EVENT_BYTES = 8 * 1024 * 1024
EARLY_EVENT_OVERHEAD = 200

# Jobs of one model registered within this many seconds share one record of their registration
# time (`_registry._Cohort`): no float per job at a million pending; their registration time
# (their latency samples, the `settled` hook's seconds) is known to this much.
COHORT_SPAN = 0.01

# Model schemas (`oxedit._resources.validate`): a model the models endpoint said does not exist
# is asked about again after this long (it may have been added since); a schema that could not be
# fetched is tried again after this long (the offline table or no check meanwhile); the CLI's
# disk cache keeps schemas this long.
UNKNOWN_MODEL_RECHECK = 60.0
SCHEMA_RETRY_AFTER = 60.0
SCHEMA_DISK_TTL = 600.0
# Request shapes (parameters with their values; the prompt's and images' types) that passed
# a model's schema, remembered per model so that the same shape is not checked again.
SCHEMA_SHAPES_KEPT = 1024

# The billing history (`GET /api/ai/generations`): the spec's largest page, and our default.
MAX_HISTORY_PAGE_SIZE = 1000
DEFAULT_HISTORY_PAGE_SIZE = 100

# The HTML report (`oxedit report`, `report.html`): thumbnails at most this many pixels on a
# side, WebP at this quality (a few KB each), made by this many threads; the page renders this
# many cards at once (the first at load, the next as the reader scrolls), so a 10,000-item run
# opens as fast as a 100-item one.
REPORT_THUMB_PIXELS = 192
REPORT_THUMB_QUALITY = 60
REPORT_THUMB_WORKERS = 4
REPORT_CARDS_PER_CHUNK = 120

# `SyncClient` (scripts and notebooks): what a Ctrl-C waits for before it re-raises (the
# answer of an enqueue already sent, and the DELETE of what the interrupted call leaves behind:
# both take milliseconds on a healthy API); how often a notebook's batch bar is redrawn; and
# the inline before/after grid: this many items, thumbnails this many pixels on a side.
SYNC_INTERRUPT_GRACE = 10.0
SYNC_PROGRESS_TICK = 0.25
SYNC_GRID_ITEMS = 24
SYNC_GRID_THUMB_PIXELS = 160
SYNC_GRID_THUMB_QUALITY = 70

# Hosted inputs (`upload_repo`, see `oxedit._resources.upload`): uploads in flight per client
# (each a few MB, sharing the API connections with everything else), and where in the repository
# they go: `<UPLOAD_DIRECTORY>/<sha256>.<ext>` on UPLOAD_BRANCH (the branch a new repository
# has [doc: File Upload Example]).
UPLOAD_CONCURRENCY = 4
UPLOAD_DIRECTORY = "oxedit-inputs"
UPLOAD_BRANCH = "main"
UPLOAD_AUTHOR = ("oxedit", "oxedit@localhost")  # the commit's author (name, email) [doc]
# An image sent inline as a data URI above this many bytes warns once per process that
# `upload_repo` sends it once instead (the API echoes it in every row of every list).
LARGE_INLINE_IMAGE_BYTES = 1_000_000

# Lost-enqueue recovery reads the history newest first until its rows are older than the
# window in which the lost POST could have created its row. The first page is this small (a
# lost POST's row is usually the newest), each next one twice the size, up to
# RECOVERY_MAX_PAGE_SIZE (a power of two times the first, at most the spec's 1000): the rows
# read stay within ~2x of those in the window, whatever the account's history holds.
RECOVERY_FIRST_PAGE_SIZE = 8
RECOVERY_MAX_PAGE_SIZE = 512

# `oxedit doctor`: how long it waits for a `: keep-alive` on an idle event stream (the
# documented 15 s plus slack), for the `--spend` generation to finish, and, once it finished,
# for its completion event (which may trail the job's end by a moment).
DOCTOR_KEEPALIVE_TIMEOUT = 20.0
DOCTOR_GENERATION_TIMEOUT = 300.0
DOCTOR_EVENT_GRACE = 5.0
# `oxedit.ray`: the named actor holding the cluster's one enqueue budget, and how it paces.
RAY_BUDGET_NAME = "oxedit-rate-budget"
RAY_BUDGET_NAMESPACE = "oxedit"
# The budget never promises tokens further ahead than RAY_LEASE_SECONDS (one actor call per
# lease): what was leased at a rate that has just dropped is at most that much of it.
RAY_LEASE_SECONDS = 0.25
# A leased token unused this long after its time is dropped: an actor whose loop was busy
# must not spend its missed turns in one burst (nor those of a rate that has dropped since).
RAY_TOKEN_STALE = 0.05
# The slow start: the shared rate starts at RAY_RATE_START enqueues/s (the rate of an
# explicit `max_rate` if there is one) and, until the first refusal, each enqueue accepted
# adds RAY_SLOW_START_GAIN/s to it (at full use the rate doubles every ln 2 / gain seconds,
# ~0.5 s), never more than RAY_RATE_HEADROOM times what was accepted over the last
# RAY_MEASURE_SECONDS (a rate the actors do not use is not grown).
RAY_RATE_START = 20.0
RAY_SLOW_START_GAIN = 1.5
RAY_RATE_HEADROOM = 3.0
# On a refusal the shared rate becomes RAY_RATE_DECREASE of the lower of itself and what was
# accepted over the last RAY_MEASURE_SECONDS (the account's limit, measured); then each enqueue
# accepted adds RAY_RATE_INCREASE/s to it (at full use, 3% a second). A `Retry-After` longer
# than RAY_PAUSE_AFTER seconds (a quota, an outage, not a token bucket's refill) pauses every
# actor.
RAY_RATE_DECREASE = 0.9
RAY_RATE_INCREASE = 0.03
RAY_MEASURE_SECONDS = 1.0
RAY_PAUSE_AFTER = 1.0
# How long an actor waits for another live one to settle an item it is sending, at most.
RAY_SENDING_WAIT = 60.0
# How long an actor's teardown waits for its client to close (sent enqueues answered).
RAY_CLOSE_TIMEOUT = 30.0
# A temporary output file younger than this may be another process's write in progress (a
# folder shared by shards or Ray actors): a run starting then leaves it alone.
SHARED_TEMP_GRACE = 600.0
# How soon an actor tells the budget of the enqueues accepted since it last said.
RAY_REPORT_EVERY = 0.05
# An actor's enqueues refused (429/503) are retried this many times: under a shared budget a
# refusal is the budget's misjudgement, not the row's, and must not end it.
RAY_MAX_RETRIES = 30

# A journal's lock: tried this many times, so far apart, before "in use by another run" (a
# report merging the journals holds each lock for an instant).
JOURNAL_LOCK_ATTEMPTS = 3
JOURNAL_LOCK_RETRY = 0.01
