"""I/O at the edges: Microsoft Graph, the CRM, Azure Storage, telemetry."""
