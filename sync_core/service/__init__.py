"""The queue worker and the scheduled runs: gather, decide, apply; reconcile; subscriptions."""
