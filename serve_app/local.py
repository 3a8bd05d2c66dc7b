"""``clockwork serve``: a local Ray and the app, for people with no cluster.

The subcommand is registered through the ``clockwork.commands`` entry point (pyproject.toml), so the
core CLI never imports this layer.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from serve_app.config import AppArgs, BuilderArgs

METRICS_PORT = 8080  # Ray's metrics exporter, as on the cluster (monitoring/prometheus.yml scrapes it)


def add_command(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="start a local Ray and the Serve app (no cluster needed)",
        epilog="example: clockwork serve --media-root samples/ --port 8000",
    )
    p.add_argument(
        "--media-root", action="append", default=[], help="directory videos may be read from (repeatable; default: .)"
    )
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default: %(default)s)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for every interface (default: %(default)s)"
    )
    p.add_argument(
        "--database-url", default=None, help="SQLAlchemy URL of the catalog (default: sqlite in CLOCKWORK_DATA_DIR)"
    )
    p.add_argument(
        "--postback-allow",
        action="append",
        default=[],
        metavar="CIDR|HOST",
        help="let postbacks go to this network or host, e.g. 127.0.0.0/8 for a receiver on this machine (repeatable)",
    )
    p.add_argument(
        "--postback-deny",
        action="append",
        default=[],
        metavar="CIDR|HOST",
        help="refuse this network or host too (repeatable)",
    )
    p.add_argument(
        "--api-token-file",
        type=Path,
        default=None,
        help="require the bearer token in this file (all routes but /healthz, /readyz, /openapi.json and /docs)",
    )
    p.add_argument("--postback-secret-file", type=Path, default=None, help="sign postbacks with the key in this file")
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        help=f"largest request body (default: {AppArgs.model_fields['max_body_bytes'].default})",
    )
    p.add_argument(
        "--max-active-jobs",
        type=int,
        default=None,
        help="queued + running jobs before POST answers 429 (default: "
        f"{AppArgs.model_fields['max_active_jobs'].default})",
    )
    p.add_argument("--replicas", type=int, default=1, help="detector replicas (default: %(default)s)")
    p.add_argument("--device", default="auto", help="detector device: auto, cpu or cuda (default: %(default)s)")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=METRICS_PORT,
        help="port of the Prometheus metrics (Ray's exporter: the clockwork_* series with a ray_ prefix; default: "
        "%(default)s)",
    )
    p.set_defaults(
        func=lambda args: serve_forever(
            **_app_args(args), host=args.host, port=args.port, metrics_port=args.metrics_port
        )
    )


def _app_args(args) -> dict:
    """The command line as app builder arguments (files are read here, so secrets stay off the command line)."""
    out: dict = {
        "media_roots": args.media_root or ["."],
        "detector_replicas": args.replicas,
        "detector": {"device": args.device},
    }
    if args.database_url:
        out["database_url"] = args.database_url
    if args.postback_allow:
        out["postback_allow"] = args.postback_allow
    if args.postback_deny:
        out["postback_deny"] = [*AppArgs.model_fields["postback_deny"].default_factory(), *args.postback_deny]
    for flag, key in (("api_token_file", "api_token"), ("postback_secret_file", "postback_secret")):
        path = getattr(args, flag)
        if path is not None:
            try:
                out[key] = path.read_text().strip()
            except OSError as exc:
                raise SystemExit(
                    f"clockwork serve: cannot read --{flag.replace('_', '-')} {path}: {exc.strerror}"
                ) from None
    for key in ("max_body_bytes", "max_active_jobs"):
        if getattr(args, key) is not None:
            out[key] = getattr(args, key)
    return out


def serve_forever(*, host: str = "127.0.0.1", port: int = 8000, metrics_port: int = 8080, **app_args) -> int:
    import ray
    from ray import serve

    from serve_app.app import app_builder

    args = BuilderArgs.model_validate(app_args)  # a bad setting fails here with its name, before Ray starts
    # The detector asks for 2 CPUs and the ingress half of one: declare enough on small machines.
    # address="local": always a Ray of its own, never a cluster that happens to run on this machine
    ray.init(
        address="local",
        num_cpus=max(4, os.cpu_count() or 1),
        include_dashboard=False,
        _metrics_export_port=metrics_port,
    )
    serve.start(http_options={"host": host, "port": port})
    serve.run(app_builder(args), name="clockwork", route_prefix="/")
    print(
        f"clockwork API on http://{host}:{port} (media roots: {', '.join(args.media_roots)}), on a Ray of its own "
        "started for it;\n"
        f"  web pages at http://{host}:{port}/ui, the API described at http://{host}:{port}/docs,\n"
        f"  Prometheus metrics at http://127.0.0.1:{metrics_port}/metrics; Ctrl-C or SIGTERM stops it",
        flush=True,
    )
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum, _frame) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    # Set explicitly: a shell starts a background job with SIGINT ignored, and Ray's own SIGTERM handler dumps stacks.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    while not stop.wait(3600):
        pass
    print(f"clockwork serve: {received[0]} received; stopping the app and its Ray", flush=True)
    serve.shutdown()
    ray.shutdown()
    return 0
