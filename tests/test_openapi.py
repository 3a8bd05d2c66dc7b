"""The OpenAPI document drives a fuzzer we did not write: schemathesis, through its own CLI, against the app served
over real HTTP. No answer is a 5xx, and every answer matches the document (status, content type, body schema,
Allow on 405), for requests with and without the token."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
TOKEN = "openapi-test-token"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "negative_data_rejection,unsupported_method,allow_header_conformance"
)


@pytest.mark.parametrize("auth, examples", [(True, 300), (False, 30)], ids=["with-token", "without-token"])
def test_schemathesis_finds_no_5xx_and_no_schema_mismatch(live_app, tmp_path, auth, examples):
    base = live_app(api_token=TOKEN, max_active_jobs=5)
    report = tmp_path / "report.ndjson"
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{base}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(examples),
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "7",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        "--request-timeout",
        "30",
        *(["-H", f"Authorization: Bearer {TOKEN}"] if auth else []),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    summary = proc.stdout[proc.stdout.rfind("SUMMARY") :]
    print(summary[-3000:])
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    cases = int(re.search(r"(\d+) generated", summary).group(1))
    assert cases >= examples, summary  # it really ran
    assert [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
