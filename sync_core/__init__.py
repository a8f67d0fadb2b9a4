"""Calendar sync between Microsoft 365 and a CRM: the pure rule engine and the adapters around it.

`engine`, `model`, `policy` and `actions` are pure; `graph`, `crm`, `storage` and `worker` do I/O.
"""
