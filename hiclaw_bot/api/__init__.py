"""The HTTP operations surface (aiohttp): ``/healthz``, ``/readyz``, ``/metrics`` and ``/api/v1``.

It sits beside the chat layer, over the flows and the engine: it starts the same operations as the
chat commands, and reads the same store. ``make_app`` builds it for tests and benchmarks,
``open_api`` serves it for the running bot.
"""

from hiclaw_bot.api.metrics import Metrics
from hiclaw_bot.api.routes import ApiState, make_app, openapi_document
from hiclaw_bot.api.server import open_api, serving

__all__ = ["ApiState", "Metrics", "make_app", "open_api", "openapi_document", "serving"]
