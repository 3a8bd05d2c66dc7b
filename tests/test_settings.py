"""Every default once, every environment variable in one place, and the README lists them all."""

import re
from pathlib import Path

import pytest

from clockwork import settings

REPO = Path(__file__).resolve().parent.parent
CODE = [p for d in ("clockwork", "serve_app", "jobs", "bench") for p in (REPO / d).rglob("*.py")]


def test_only_settings_reads_the_environment():
    readers = [
        p.relative_to(REPO).as_posix()
        for p in CODE
        if re.search(r"os\.environ|os\.getenv", p.read_text()) and p.name != "settings.py"
    ]
    assert readers == []


def test_the_readme_lists_every_environment_variable():
    readme = (REPO / "README.md").read_text()
    assert [k for k in settings.ENVIRONMENT if f"`{k}`" not in readme] == []


def test_an_undocumented_variable_cannot_be_read():
    with pytest.raises(settings.ConfigError, match="not a documented environment variable"):
        settings.env("CLOCKWORK_TYPO")


def test_a_value_that_does_not_parse_names_the_variable(monkeypatch):
    monkeypatch.setenv("CLOCKWORK_BENCH_NO_RECORD", "maybe")
    with pytest.raises(settings.ConfigError, match="CLOCKWORK_BENCH_NO_RECORD"):
        settings.env("CLOCKWORK_BENCH_NO_RECORD", bool, False)


def test_defaults_are_written_once():
    """The literal defaults of detection appear in settings.py and nowhere else in the code."""
    offenders = []
    for p in CODE:
        if p.name == "settings.py":
            continue
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(
                r"min_score(: [^=]+)?\s*=\s*0\.5|min_score.*Field\(0\.5|min-score.*default=0\.5"
                r"|default=\[?\"clock\"|labels(: [^=]+)?\s*=\s*\(\"clock\",\)",
                line,
            ):
                offenders.append(f"{p.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == []


def test_package_import_does_not_load_torch():
    import subprocess
    import sys

    code = (
        "import clockwork, clockwork.errors, clockwork.timeline.result, clockwork.settings, sys; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
