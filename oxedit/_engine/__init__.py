"""The job engine: the tracker that owns a job's life, the registry of pending jobs, the shared
event listener, the enqueuer and its recovery, the check schedule, the adaptive rate. Imports
`_resources`, `_http` and the base.
"""
