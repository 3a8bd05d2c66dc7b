"""``clockwork serve``: a local Ray and the app, for people with no cluster.

The subcommand is registered through the ``clockwork.commands`` entry point (pyproject.toml), so the
core CLI never imports this layer.
"""

from __future__ import annotations

import os
import time


def add_command(sub) -> None:
    p = sub.add_parser("serve", help="start a local Ray and the Serve app (no cluster needed)",
                       epilog="example: clockwork serve --media-root samples/ --port 8000")
    p.add_argument("--media-root", action="append", default=[], help="directory videos may be read from (repeatable)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface (containers)")
    p.add_argument("--database-url", default=None)
    p.set_defaults(func=lambda args: serve_forever(media_roots=args.media_root, host=args.host, port=args.port,
                                                   database_url=args.database_url))


def serve_forever(*, media_roots: list[str], host: str = "127.0.0.1", port: int = 8000, database_url: str | None = None) -> int:
    import ray
    from ray import serve

    from serve_app.app import app_builder

    args: dict = {"media_roots": media_roots or ["."]}
    if database_url:
        args["database_url"] = database_url
    # The detector asks for 2 CPUs and the ingress half of one: declare enough on small machines.
    # address="local": always a Ray of its own, never a cluster that happens to run on this machine
    ray.init(address="local", num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(app_builder(args), name="clockwork", route_prefix="/")
    print(f"clockwork API on http://{host}:{port} (media roots: {', '.join(args['media_roots'])}); Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
        ray.shutdown()
    return 0
