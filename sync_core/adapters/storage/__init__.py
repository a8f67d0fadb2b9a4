"""Azure Storage: the queues and the tables (mappings, decisions, failures, subscriptions)."""
