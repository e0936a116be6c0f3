"""The job engine: the tracker that owns a job's life, the registry of pending jobs, the shared
event listener, the enqueuer and its recovery, the check schedule, the adaptive rate. Imports
`_resources`, `_http` and the base.

One vocabulary, used the same way in every module:

- **reconcile** (`reconciler`): ask the queue endpoints about jobs this client follows, because
  the stream cannot tell (after a reconnect, a lost event, a cancellation, which has no event).
- **recover** (`recovery`): find the rows a POST created when its answer never came (there is
  no idempotency key), within the lost-response window.
- **adopt**: start following a row found that way (or one a crashed run left behind), as if
  its enqueue had answered.
- **resume** (`_bulk/resume`): a batch re-run from its journal, which adopts what the last run
  sent and sends only what it never did.
- **cancel orphans**: a row created by a `submit()` its caller gave up on is cancelled, since
  nobody would follow it.
"""
