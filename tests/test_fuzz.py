"""Generated bodies and headers against POST /video-inference and the job routes: every answer is JSON,
with 202 or a 4xx status, never a 500 (hypothesis, 2,000 cases and more)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow  # 2,000 requests and the jobs the valid ones start: ~17 s, kept out of the fast tier

NAMES = ["clock_moving_360p25.mp4", "missing.mp4", "../etc/passwd", "/etc/passwd", "", "a\x00b", "é" * 200, "x/" * 50]
URLS = [
    "http://127.0.0.1:9/x",
    "http://[::ffff:127.0.0.1]/",
    "http://a..b/",
    "ftp://x/",
    "http://u@h/",
    "http://h\\@x/",
]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
fields = {
    "filename": st.one_of(st.sampled_from(NAMES), values),
    "postback_url": st.one_of(st.sampled_from(URLS), values),
    "labels": st.one_of(st.lists(st.sampled_from(["clock", "clok", "person", ""]), max_size=3), values),
    "min_score": st.one_of(st.floats(-1, 2), values),
    "sample_fps": st.one_of(st.sampled_from([0, 5e-324, 0.01, 2, 1e308, -1]), values),
    "views": st.one_of(st.lists(st.sampled_from(["full", "tiles", "zoomout", "zoom"]), max_size=4), values),
    "read_time": st.one_of(st.booleans(), values),
}
bodies = st.one_of(
    st.fixed_dictionaries({}, optional={**fields, "extra": values}).map(json.dumps),
    values.map(json.dumps),
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["[" * 5000, '{"filename": 1' + "0" * 5000 + "}", "{", "", "null", '{"filename": "\\ud800"}']),
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300)
headers = st.fixed_dictionaries(
    {}, optional={"Idempotency-Key": header_values, "Authorization": header_values, "Content-Type": header_values}
)


def _json_answer(resp, allowed=(202,)) -> None:
    assert resp.status_code in allowed or 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
    body = resp.json()
    assert isinstance(body, dict) and ("error" in body or resp.status_code < 300)


def test_generated_requests_get_json_4xx_or_202(make_client):
    client = make_client(max_active_jobs=2, api_token=None)  # a token would answer 401 to everything
    count = {"n": 0}

    @settings(max_examples=1600, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies, extra_headers=headers)
    def post(body, extra_headers):
        count["n"] += 1
        _json_answer(
            client.post(
                "/video-inference",
                content=body.encode("utf-8", "surrogatepass"),
                headers={"Content-Type": "application/json", **extra_headers},
            )
        )

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        job_id=st.text(max_size=80),
        suffix=st.sampled_from(["", "/result"]),
        method=st.sampled_from(["GET", "POST", "DELETE"]),
    )
    def job_routes(job_id, suffix, method):
        count["n"] += 1
        resp = client.request(method, f"/jobs/{quote(job_id, safe='')}{suffix}")
        _json_answer(resp, allowed=(200,))

    post()
    job_routes()
    assert count["n"] >= 2000
