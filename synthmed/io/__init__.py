"""Reading and writing files: medical image formats, and atomic writes."""
