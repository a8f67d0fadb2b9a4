"""The app's queue names, apart from the Storage clients: `function_app` binds its queue triggers to them
at import, which must not load the Storage SDK (a cold start's share, tests/core/test_cold_import.py)."""

CHANGES_QUEUE = "sync-changes"
POISON_QUEUE = f"{CHANGES_QUEUE}-poison"
# Bulk work (a resync's or backfill's items, a mailbox's notifications past its burst): its own queue and
# trigger, so live changes never wait behind it in queue order (service/fairness.py). Its poison, like the
# live queue's, is sync-changes-poison; the host's own `-poison` queue is created for completeness.
BULK_QUEUE = "sync-bulk"
QUEUES = (CHANGES_QUEUE, POISON_QUEUE, BULK_QUEUE, f"{BULK_QUEUE}-poison")
