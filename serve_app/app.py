"""The Serve application, wired at the bottom: ``app = Ingress.bind(Detector.bind(...))``.

    serve run serve_app.app:app                                   # defaults + environment
    serve run serve_app.app:app_builder media_roots='["/media"]'  # typed builder arguments
    serve deploy serve_app/config.yaml                            # replicas, GPU fraction, batching, autoscaling
"""

from __future__ import annotations

import json

from ray.serve import Application

from clockwork import _config
from serve_app.config import AppArgs, DetectorArgs
from serve_app.detector import DetectorDeployment
from serve_app.ingress import Ingress


def _default_gpu_fraction() -> float:
    """0 where no GPU is seen, else a quarter card per replica (four replicas share one GPU)."""
    try:
        import torch

        return 0.25 if torch.cuda.is_available() else 0.0
    except Exception:
        return 0.0


def app_builder(args: dict | None = None) -> Application:
    """Build the app from typed arguments: AppArgs fields, plus ``detector`` (DetectorArgs fields),
    ``detector_num_gpus``, ``detector_num_cpus`` and ``detector_replicas``."""
    raw = {**_env_args(), **(args or {})}  # explicit arguments win over the environment
    detector_args = DetectorArgs(**_maybe_json(raw.pop("detector", {})))
    num_gpus = raw.pop("detector_num_gpus", None)
    replicas = int(raw.pop("detector_replicas", 1))
    # Ray sets OMP_NUM_THREADS to an actor's num_cpus, so this is also torch's thread count on the CPU.
    num_cpus = float(raw.pop("detector_num_cpus", 2))
    for key in ("media_roots", "postback_allow", "postback_deny", "labels"):
        if isinstance(raw.get(key), str):
            raw[key] = _maybe_json(raw[key])
    app_args = AppArgs(**raw)
    if app_args.database_url is None:
        from clockwork.catalog import default_url

        app_args = app_args.model_copy(update={"database_url": default_url()})
    num_gpus = _default_gpu_fraction() if num_gpus is None else float(num_gpus)
    detector = DetectorDeployment.options(
        num_replicas=replicas, ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
    ).bind(detector_args.model_dump())
    return Ingress.bind(detector, app_args.model_dump())


def _maybe_json(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return [v for v in value.split(",") if v] if "," in value or "/" in value else value
    return value


def _env_args() -> dict:
    """Secrets and roots from the environment (KubeRay passes the Secret's keys this way)."""
    roots = _config.env("CLOCKWORK_MEDIA_ROOTS", str, "")
    out: dict = {"media_roots": [r for r in roots.split(":") if r]} if roots else {}
    for key, env_key in (("postback_secret", "CLOCKWORK_POSTBACK_SECRET"), ("api_token", "CLOCKWORK_API_TOKEN"),
                         ("database_url", "CLOCKWORK_DATABASE_URL")):
        value = _config.env(env_key, str, "")
        if value:
            out[key] = value
    return out


def __getattr__(name: str):
    """``serve run serve_app.app:app`` builds the default app on first access, not at import time."""
    if name == "app":
        return app_builder()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
