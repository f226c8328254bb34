"""`rarenet serve`: the HTTP API (Starlette on uvicorn) and the scheduler in one process."""

from rarenet.baseline.serve.app import Api
from rarenet.baseline.serve.server import serve

__all__ = ["Api", "serve"]
