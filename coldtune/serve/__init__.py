"""`coldtune serve`: the predictions as a web service (FastAPI) with a page."""

from coldtune.serve.app import MAX_UPLOAD_BYTES, create_app

__all__ = ["MAX_UPLOAD_BYTES", "create_app"]
