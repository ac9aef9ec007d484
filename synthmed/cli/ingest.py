"""`synthmed ingest` (not written yet)."""
