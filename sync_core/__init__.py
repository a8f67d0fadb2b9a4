"""Calendar sync between Microsoft 365 and a CRM, in layers (docs/architecture.md): `domain`, `engine` and
`ports` are pure; `adapters`, `ingress`, `service` and `ops` do I/O; `bootstrap` wires them.
"""
