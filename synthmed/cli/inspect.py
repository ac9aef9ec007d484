"""`synthmed inspect` (not written yet)."""
