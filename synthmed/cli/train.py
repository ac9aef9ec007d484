"""`synthmed train` (not written yet)."""
