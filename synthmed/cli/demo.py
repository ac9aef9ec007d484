"""`synthmed demo` (not written yet)."""
