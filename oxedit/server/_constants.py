"""Default numbers of the local server and its fault injection, in one place."""

from __future__ import annotations

# Generations a server processes at once (`LocalServer(workers=...)`, `oxedit serve --workers`).
DEFAULT_WORKERS = 8

# `Faults.drip_interval`: bytes written per piece. A few, not one, so that a row that echoes a
# data URI (tens of kB) still arrives in a test's lifetime at a 1 ms interval.
DRIP_PIECE_BYTES = 4

# `Faults.result_gzip_bomb`: zeros are compressed this many at a time, so the inflated body is
# never held in memory (1 MiB of zeros deflates to about 1 kB).
GZIP_BOMB_CHUNK = 1024 * 1024

# `Faults.get_redirect_rate`: where the redirect points, like a proxy's login page.
LOGIN_PATH = "/login"

# The user the API key belongs to: `GET /api/ai/queue` lists this namespace unless `namespace=`
# names another [doc: async_queue, "Corrections and additions" of oxen-api.md].
USER_NAMESPACE = "ox"
