"""Shared fixtures: the sample library (rendered once per session), the default detector, media factories."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clockwork.samples import load_manifest, write_samples

REPO = Path(__file__).resolve().parent.parent


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_configure(config):
    """Ray reads RAY_AUTH_MODE when it is first imported, which may be before any fixture runs (a test
    module importing ray.serve.schema), so the test cluster's token is set up here, first."""
    import secrets
    import tempfile

    token_dir = Path(tempfile.mkdtemp(prefix="clockwork-ray-auth-"))
    (token_dir / "token").write_text(secrets.token_hex(32))
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_dir / "token")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    if os.environ.get("CLOCKWORK_FAIL_WITHOUT_CUDA") == "1":
        return  # the GPU run: needs_cuda tests run and fail loudly instead of skipping
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (set CLOCKWORK_FAIL_WITHOUT_CUDA=1 to fail instead)")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


def _samples_key() -> str:
    """The rendered library depends on the renderer's code and on the ffmpeg that runs it."""
    import hashlib

    from clockwork import samples
    from clockwork.video import ffmpeg as ff

    version = subprocess.run([ff.ffmpeg_bin(), "-version"], capture_output=True, text=True).stdout.splitlines()[:1]
    return hashlib.sha256(Path(samples.__file__).read_bytes() + "".join(version).encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory) -> Path:
    """The sample library, rendered by ffmpeg once and cached under ~/.cache/clockwork/samples/<hash of
    the renderer and ffmpeg>, so a change to the renderer renders again. On the GPU machine, which has no
    ffmpeg, CLOCKWORK_SAMPLES_DIR points at a library rendered elsewhere by the same generator."""
    given = os.environ.get("CLOCKWORK_SAMPLES_DIR")
    if given:
        return Path(given)
    cache = Path.home() / ".cache" / "clockwork" / "samples" / _samples_key()
    if not (cache / "manifest.json").is_file():
        fresh = tmp_path_factory.mktemp("samples")
        write_samples(fresh)
        cache.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copytree(fresh, cache.with_suffix(".part"), dirs_exist_ok=True)
            os.replace(cache.with_suffix(".part"), cache)
        except OSError:  # another test run finished the same library first
            shutil.rmtree(cache.with_suffix(".part"), ignore_errors=True)
    return cache


@pytest.fixture(scope="session")
def manifest(samples_dir) -> dict:
    return load_manifest(samples_dir)


@pytest.fixture(scope="session")
def detector():
    from clockwork.detect.detector import Detector

    return Detector(device="cpu")


@pytest.fixture(scope="session")
def coco_detector():
    """COCO's own heads (every COCO label): what tests of the model itself compare against."""
    from clockwork.detect.detector import Detector

    return Detector(device="cpu", head="none")


def ffmpeg(*args: str) -> None:
    """Run ffmpeg for a test fixture; the command is visible in the test that calls it."""
    subprocess.run([shutil.which("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture
def make_video(tmp_path):
    """Factory: ``make_video(name, *ffmpeg_args)`` renders ``tmp_path/name`` and returns its path."""

    def make(name: str, *args: str) -> Path:
        out = tmp_path / name
        ffmpeg(*args, str(out))
        return out

    return make


# -- Ray -------------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A real local Ray cluster of two nodes (head + one worker node), started with `ray start`,
    with token authentication, the dashboard (for `ray job submit`), a metrics port per node, and two
    declared GPUs on the head (no real ones: Ray schedules by count, torch still sees no CUDA)."""
    ray_bin = str(Path(sys.executable).with_name("ray"))  # token auth: see pytest_configure
    gcs, dash, metrics, metrics2 = _free_port(), _free_port(), _free_port(), _free_port()
    common = ["--disable-usage-stats", "--object-store-memory=250000000"]
    subprocess.run([ray_bin, "stop", "--force"], capture_output=True)
    # Two fake GPUs on the head (Ray only counts them) let tests check how fractional replicas are placed.
    subprocess.run(
        [
            ray_bin,
            "start",
            "--head",
            f"--port={gcs}",
            "--num-cpus=6",
            "--num-gpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            f"--metrics-export-port={metrics}",
            *common,
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            ray_bin,
            "start",
            f"--address=127.0.0.1:{gcs}",
            "--num-cpus=2",
            f"--metrics-export-port={metrics2}",
            '--resources={"second_node": 2}',
            *common,
        ],
        check=True,
        capture_output=True,
    )
    import ray

    ray.init(address=f"127.0.0.1:{gcs}", log_to_driver=False)
    info = {
        "address": f"127.0.0.1:{gcs}",
        "dashboard": f"http://127.0.0.1:{dash}",
        "metrics": [f"http://127.0.0.1:{m}/metrics" for m in (metrics, metrics2)],
    }
    yield info
    try:
        from ray import serve

        serve.shutdown()
    except Exception:
        pass
    ray.shutdown()
    subprocess.run([ray_bin, "stop", "--force"], capture_output=True)


@pytest.fixture(scope="session")
def serve_port(ray_cluster):
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return port


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server (``.ci/run`` installs and starts one and sets the URL)."""
    url = os.environ.get("CLOCKWORK_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must provide CLOCKWORK_TEST_POSTGRES_URL (.ci/run starts PostgreSQL)")
        pytest.skip("CLOCKWORK_TEST_POSTGRES_URL is not set (run through .ci/run for PostgreSQL)")
    return url


# -- the API in-process ----------------------------------------------------------------------------

SECRET = "test-signing-key"
TOKEN = "test-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def make_client(tmp_path, samples_dir, detector):
    """Factory: ``make_client(**AppArgs overrides, detector_client=...)`` -> a Starlette TestClient around
    ``build_app`` with the real detector in-process, a SQLite catalog in tmp_path and media roots
    samples_dir and tmp_path/media (loopback receivers allowed)."""
    from starlette.testclient import TestClient

    from serve_app.api import Api, build_app
    from serve_app.client import LocalDetectorClient
    from serve_app.config import AppArgs

    clients = []

    def make(detector_client=None, **overrides):
        (tmp_path / "media").mkdir(exist_ok=True)
        args = AppArgs(
            **{
                "media_roots": [str(samples_dir), str(tmp_path / "media")],
                "database_url": f"sqlite:///{tmp_path}/catalog.sqlite",
                "postback_allow": ["127.0.0.0/8"],
                "postback_secret": SECRET,
                "api_token": TOKEN,
                "postback_base_delay_s": 0.2,
                "postback_max_delay_s": 0.5,
                "reaper_interval_s": 0.3,
                **overrides,
            }
        )
        client = TestClient(build_app(Api(args, detector_client or LocalDetectorClient(detector))), headers=AUTH)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def live_app(tmp_path, samples_dir, detector):
    """Factory: ``live_app(**AppArgs overrides)`` -> base URL of ``build_app`` served by uvicorn on a loopback
    port in a thread (real HTTP for clients that are not Starlette's TestClient)."""
    from contextlib import ExitStack

    from clockwork.testing import AppServer
    from serve_app.api import Api, build_app
    from serve_app.client import LocalDetectorClient
    from serve_app.config import AppArgs

    with ExitStack() as servers:

        def make(**overrides) -> str:
            args = AppArgs(
                **{"media_roots": [str(samples_dir)], "database_url": f"sqlite:///{tmp_path}/live.sqlite", **overrides}
            )
            return servers.enter_context(AppServer(build_app(Api(args, LocalDetectorClient(detector))))).url

        yield make
