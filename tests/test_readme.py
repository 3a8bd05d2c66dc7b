"""The README's commands run as written: every ```sh block, in order, in one shell, and every ```python block,
from the repository's root.

They run in namespaces of their own (PID and network; ``unshare`` from util-linux, as root): ports 8000, 8080, 6379
and 8265 are the README's own, and ``ray stop`` sees only the README's Ray. The temp folder (Ray's too), HOME and the
data folder are fresh; the outer test session's environment (its Ray token among it) is not passed on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from clockwork import settings

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```$", re.S | re.M)


def readme_script(text: str) -> str:
    """One bash script of the README's blocks in order: sh as written, python through the venv's interpreter."""
    parts = ["set -euo pipefail", "set -x"]
    for kind, body in BLOCK.findall(text):
        if kind == "sh":
            parts.append(body)
        else:
            parts.append(f"{REPO}/.venv/bin/python - <<'README_PYTHON'\n{body}README_PYTHON")
    return "\n".join(parts) + "\n"


def test_the_readme_has_commands_to_run():
    script = readme_script((REPO / "README.md").read_text())
    assert "make demo" in script and "ray job submit" in script and "curl" in script and "detect_video" in script


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs util-linux's unshare as root")
def test_the_readmes_commands_run_as_written(tmp_path):
    script = tmp_path / "readme.sh"
    script.write_text(readme_script((REPO / "README.md").read_text()))
    # a fresh temp folder, HOME and data folder (short: Ray's socket paths live under the temp folder); the model is
    # the one set-up already verified
    private = Path(tempfile.mkdtemp(prefix="cwr", dir="/tmp"))
    for name in ("tmp", "home", "data"):
        (private / name).mkdir()
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": f"{private}/home",
        "LANG": "C.UTF-8",
        "TMPDIR": f"{private}/tmp",
        "RAY_TMPDIR": f"{private}/tmp",
        "CLOCKWORK_DATA_DIR": f"{private}/data",
        "CLOCKWORK_MODEL_DIR": str(settings.model_dir()),
    }  # and no CI=true: the README's user runs make test without CI's PostgreSQL, whose tests then skip
    inner = f"ip link set lo up && cd {REPO} && exec bash {script}"
    try:
        proc = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "--net", "bash", "-c", inner],
            env=env,
            capture_output=True,
            text=True,
            timeout=2400,
        )
    finally:
        shutil.rmtree(private, ignore_errors=True)
    tail = proc.stdout[-6000:] + "\n--- stderr ---\n" + proc.stderr[-8000:]
    assert proc.returncode == 0, tail
    out = proc.stdout + proc.stderr
    assert "7/7 files match their ground truth" in out, tail  # make demo
    assert "clockwork serve: SIGINT received; stopping" in out, tail  # the backgrounded server stopped on SIGINT
    assert re.search(r"split: \d+ snippet\(s\) cut this run", out) and "join: " in out, tail
    assert "AuthenticationError" not in out and "Traceback" not in out, tail
