"""`synthmed audit` (not written yet)."""
