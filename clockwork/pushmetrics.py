"""Batch-job metrics for the Prometheus Pushgateway (Prometheus' convention for batch jobs).

When ``PUSHGATEWAY_URL`` is set, a job's counters and durations are pushed once when it ends;
when it is unset nothing extra happens.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway

from clockwork import settings
from clockwork._logging import logger


class JobMetrics:
    def __init__(self, job: str):
        self.job = job
        self.url = settings.pushgateway_url() or ""
        self.registry = CollectorRegistry()
        self.items = Counter(
            "clockwork_job_items_total",
            "Items a batch job handled, by kind and outcome.",
            ("kind", "outcome"),
            registry=self.registry,
        )
        self.seconds = Gauge(
            "clockwork_job_duration_seconds", "Wall time of the last run of a batch job.", registry=self.registry
        )
        self.last_success = Gauge(
            "clockwork_job_last_success_unixtime",
            "When the job last finished without failures.",
            registry=self.registry,
        )
        self.output_seconds = Gauge(
            "clockwork_job_output_duration_seconds", "Seconds of video the job produced.", registry=self.registry
        )
        self._t0 = time.time()

    def count(self, kind: str, outcome: str, n: int = 1) -> None:
        self.items.labels(kind, outcome).inc(n)

    def push(self, *, ok: bool) -> None:
        self.seconds.set(time.time() - self._t0)
        if ok:
            self.last_success.set_to_current_time()
        if not self.url:
            return
        try:
            push_to_gateway(self.url, job=f"clockwork_{self.job}", registry=self.registry)
            logger.info("pushed %s metrics to %s", self.job, self.url)
        except OSError as exc:  # metrics must never fail the job
            logger.warning("could not push metrics to %s: %s", self.url, exc)
