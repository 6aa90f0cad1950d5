"""The report: its schema (data), atomic save/load, and the pure renderers (HTML, PDF, JSON)."""
