"""The Serve application, wired at the bottom: ``Ingress.bind(DetectorDeployment.bind(...))``.

serve run serve_app.app:app                                   # defaults + environment
serve run serve_app.app:app_builder media_roots='["/media"]'  # typed builder arguments
serve deploy serve_app/config.yaml                            # replicas, GPU fraction, batching, autoscaling
"""

# No ``from __future__ import annotations`` here: Ray Serve reads app_builder's parameter annotation as
# a class to validate the builder arguments with it (the typed application builder pattern).

from ray.serve import Application

from serve_app.config import BuilderArgs
from serve_app.detector import DetectorDeployment
from serve_app.ingress import Ingress


def _default_gpu_fraction() -> float:
    """0 where no GPU is seen, else a quarter card per replica (four replicas share one GPU)."""
    try:
        import torch

        return 0.25 if torch.cuda.is_available() else 0.0
    except Exception:
        return 0.0


def app_builder(args: BuilderArgs) -> Application:
    """Build the app from typed arguments (a dict is validated into :class:`BuilderArgs`)."""
    if not isinstance(args, BuilderArgs):
        args = BuilderArgs.model_validate(args or {})
    num_gpus = _default_gpu_fraction() if args.detector_num_gpus is None else args.detector_num_gpus
    detector = DetectorDeployment.options(
        num_replicas=args.detector_replicas,
        max_ongoing_requests=args.detector_max_ongoing_requests,
        ray_actor_options={"num_cpus": args.detector_num_cpus, "num_gpus": num_gpus},
    ).bind(args.detector)
    return Ingress.options(num_replicas=args.ingress_replicas).bind(detector, args.app_args())


def __getattr__(name: str):
    """``serve run serve_app.app:app`` builds the default app on first access, not at import time."""
    if name == "app":
        return app_builder(BuilderArgs())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
