"""`synthmed sample` (not written yet)."""
