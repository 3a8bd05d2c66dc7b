"""Write one benchmark run to a file of its own in docs/records/: machine or card, date, versions, command, figures."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import sys
from pathlib import Path

from clockwork import settings

RECORDS = Path(__file__).resolve().parent.parent / "docs" / "records"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{os.cpu_count()} cores ({cpu})"
    try:
        import torch

        if torch.cuda.is_available():
            text = f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}; " + text
    except Exception:
        pass
    return text


def versions(*modules: str) -> str:
    out = [f"python {platform.python_version()}"]
    for name in modules:
        try:
            mod = __import__(name)
            out.append(f"{name} {getattr(mod, '__version__', '?')}")
        except Exception:
            pass
    return ", ".join(out)


def command() -> str:
    """The command as typed: ``python -m bench.NAME ARGS`` (benchmarks run as modules from the repo root)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    head = f"python -m {spec.name}" if spec and spec.name else Path(sys.argv[0]).as_posix()
    return " ".join([head, *sys.argv[1:]])


def commit() -> str:
    """The repository's commit, with "+changes" when the working tree differs from it. ``CLOCKWORK_BENCH_COMMIT``
    overrides it: the GPU machine's copy of the tree may carry a stale .git, so pass the commit there."""
    import subprocess

    given = settings.env("CLOCKWORK_BENCH_COMMIT", str, "")
    if given:
        return given
    root = RECORDS.parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return rev + (" +changes" if dirty.strip() else "")


def record(title: str, lines: list[str], *, modules=("torch", "av", "cv2", "ray")) -> str:
    """Print the run and write it to docs/records/<date>-<time>-<title>.md (unless CLOCKWORK_BENCH_NO_RECORD)."""
    now = _dt.datetime.now(_dt.UTC)
    block = [
        f"# {title}",
        "",
        f"- date: {now.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- versions: {versions(*modules)}",
        f"- command: `{command()}`",
        f"- commit: {commit()}",
        "",
        *lines,
        "",
    ]
    text = "\n".join(block) + "\n"
    if not settings.env("CLOCKWORK_BENCH_NO_RECORD", bool, False):
        RECORDS.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60].strip("-")
        (RECORDS / f"{now.strftime('%Y-%m-%d-%H%M%S')}-{slug}.md").write_text(text)
    print(text)
    return text
