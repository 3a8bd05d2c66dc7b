"""The Ingress deployment (CPU only): the HTTP app of ``serve_app.api`` around a handle to the detector."""

from __future__ import annotations

import asyncio

from ray import serve

from serve_app.api import Api, build_app
from serve_app.client import RayDetectorClient
from serve_app.config import AppArgs


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=200)
@serve.ingress()  # the app is built per replica by __serve_build_asgi_app__ (serve.ingress's late-bound mode)
class Ingress:
    def __init__(self, detector, args: AppArgs | None = None):
        self.api = Api(args or AppArgs(), RayDetectorClient(detector))
        try:  # Serve runs the constructor on the replica's event loop: resume orphaned jobs at once
            asyncio.get_running_loop()
            self.api.ensure_reaper()
        except RuntimeError:
            pass  # no loop here; the first request starts the reaper

    def __serve_build_asgi_app__(self):
        """The Starlette app around this replica's Api; Ray calls it after the constructor."""
        return build_app(self.api)
