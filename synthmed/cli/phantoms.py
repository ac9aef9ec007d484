"""`synthmed phantoms` (not written yet)."""
