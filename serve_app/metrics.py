"""Serve metrics, created once per replica; exported through Ray's Prometheus endpoint (``ray_`` prefix)."""

from __future__ import annotations

from ray.serve.metrics import Counter, Gauge, Histogram

LATENCY_BOUNDARIES = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256]


class DetectorMetrics:
    def __init__(self):
        self.frames_decoded = Counter(
            "clockwork_frames_decoded_total", description="Frames decoded by detector replicas.", tag_keys=("device",)
        )
        self.frames_inferred = Counter(
            "clockwork_frames_inferred_total",
            description="Model inputs run: one per view of each detected frame.",
            tag_keys=("device",),
        )
        self.batch_frames = Histogram(
            "clockwork_batch_frames",
            description="Frames per inference batch.",
            boundaries=BATCH_BOUNDARIES,
            tag_keys=("device",),
        )
        self.batch_requests = Histogram(
            "clockwork_batch_requests",
            description="Concurrent calls merged into one inference batch.",
            boundaries=BATCH_BOUNDARIES,
            tag_keys=("device",),
        )
        self.stage_seconds = Histogram(
            "clockwork_stage_seconds",
            description="Seconds per stage call (decode, inference, postback).",
            boundaries=LATENCY_BOUNDARIES,
            tag_keys=("stage",),
        )
        # NVML gauges: named apart from the DCGM exporter's DCGM_FI_* so both can be scraped side by side.
        self.gpu_util = Gauge(
            "clockwork_gpu_utilization_percent",
            description="GPU utilisation seen by a replica (NVML).",
            tag_keys=("gpu",),
        )
        self.dec_util = Gauge(
            "clockwork_gpu_decoder_utilization_percent",
            description="NVDEC utilisation seen by a replica (NVML).",
            tag_keys=("gpu",),
        )
        self.mem_used = Gauge(
            "clockwork_gpu_memory_used_bytes",
            description="GPU memory used on the replica's card (NVML).",
            tag_keys=("gpu",),
        )
        self.replica_mem = Gauge(
            "clockwork_replica_gpu_memory_bytes",
            description="GPU memory held by this replica's process (NVML).",
            tag_keys=("gpu",),
        )
        self.fallbacks = Counter(
            "clockwork_decode_fallback_total",
            description="Chunks decoded on the CPU although a GPU decoder was wanted.",
            tag_keys=("reason",),
        )


class IngressMetrics:
    def __init__(self):
        self.requests = Counter(
            "clockwork_http_requests_total",
            description="HTTP requests by route and status.",
            tag_keys=("route", "status"),
        )
        self.jobs = Gauge("clockwork_jobs", description="Jobs in the catalog by status.", tag_keys=("status",))
        self.queue_depth = Gauge("clockwork_queue_depth", description="Jobs queued or running.")
        self.jobs_finished = Counter(
            "clockwork_jobs_finished_total", description="Jobs that ended, by status.", tag_keys=("status",)
        )
        self.postback_attempts = Counter(
            "clockwork_postback_attempts_total", description="Postback POSTs by outcome.", tag_keys=("outcome",)
        )
        self.postback_failures = Counter(
            "clockwork_postback_failures_total",
            description="Postbacks given up after the last attempt or refused by policy.",
        )
        self.stage_seconds = Histogram(
            "clockwork_stage_seconds",
            description="Seconds per stage call (decode, inference, postback).",
            boundaries=LATENCY_BOUNDARIES,
            tag_keys=("stage",),
        )
        self.job_seconds = Histogram(
            "clockwork_job_seconds", description="Seconds from job start to result.", boundaries=LATENCY_BOUNDARIES
        )
