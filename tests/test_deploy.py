"""Every deployment file is checked: Kubernetes manifests, KubeRay CRDs, serveConfigV2, cluster.yaml,
the Dockerfile, the Prometheus config and the Grafana dashboard."""

from __future__ import annotations

import functools
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "k8s"
KUBERAY_SCHEMAS = REPO.parent / "shared" / "schemas" / "kuberay-v1.7.0"
K8S_VERSION = "1.33"
CORE_KINDS = {"Namespace", "Secret", "PersistentVolumeClaim", "Service", "StatefulSet", "DaemonSet"}
KUBERAY_KINDS = {
    "RayService": "ray.io_rayservices.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayCluster": "ray.io_rayclusters.yaml",
}
RAY_VERSION = next(
    line.split("==")[1].strip()
    for line in (REPO / "requirements.txt").read_text().splitlines()
    if line.startswith("ray[")
)


def manifests():
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


ALL = list(manifests())


def test_kustomization_lists_every_manifest():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kust["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert kust["namespace"] == "clockwork"


@pytest.mark.parametrize(
    "name,doc",
    [(n, d) for n, d in ALL if d["kind"] in CORE_KINDS],
    ids=lambda v: v if isinstance(v, str) else v["kind"],
)
def test_core_kinds_validate_offline(name, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        assert ":" in c["image"] and not c["image"].endswith(":latest"), c["image"]
        assert c["resources"]["requests"] == c["resources"]["limits"]


@functools.cache
def crd_validator(kind: str):
    """One validator per CRD, built once: jsonschema.validate would re-parse and re-check the (large,
    trusted) schema on every call."""
    path = KUBERAY_SCHEMAS / KUBERAY_KINDS[kind]
    if not path.is_file():
        return None
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    return jsonschema.validators.validator_for(schema)(schema)


@pytest.mark.parametrize(
    "name,doc",
    [(n, d) for n, d in ALL if d["kind"] in KUBERAY_KINDS],
    ids=lambda v: v if isinstance(v, str) else v["kind"],
)
def test_kuberay_resources_match_the_crds(name, doc):
    validator = crd_validator(doc["kind"])
    if validator is None:
        pytest.skip(f"KubeRay v1.7.0 CRD schemas not found at {KUBERAY_SCHEMAS}")
    validator.validate(doc)
    cluster = doc["spec"].get("rayClusterConfig") or doc["spec"].get("rayClusterSpec")
    assert cluster["rayVersion"] == RAY_VERSION
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    gpu = groups["gpu"]["template"]["spec"]
    container = gpu["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility,video"
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") == "clockwork-media" for v in gpu["volumes"])
    images = {
        c["image"]
        for g in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        for c in g["template"]["spec"]["containers"]
    }
    assert len(images) == 1 and not next(iter(images)).endswith(":latest")


def test_serve_config_v2_loads_and_imports():
    from ray.serve.schema import ServeDeploySchema

    doc = next(d for _, d in ALL if d["kind"] == "RayService")
    config = ServeDeploySchema.model_validate(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    app = config.applications[0]
    module, attr = app.import_path.split(":")
    assert callable(getattr(importlib.import_module(module), attr))
    deployments = {d.name: d for d in app.deployments}
    assert deployments["Detector"].ray_actor_options.num_gpus == 0.25
    assert not deployments["Ingress"].ray_actor_options.num_gpus
    # the checked-in Serve config and the RayService embed the same application
    local = yaml.safe_load((REPO / "serve_app" / "config.yaml").read_text())
    assert local["applications"] == yaml.safe_load(doc["spec"]["serveConfigV2"])["applications"]
    ServeDeploySchema.model_validate(local)


def test_cpu_serve_config_runs_the_detector_on_the_cpu():
    """serve_app/config.cpu.yaml: the same application, with no GPU asked for (a GPU-less machine would
    otherwise leave the detector pending forever)."""
    from ray.serve.schema import ServeDeploySchema

    from serve_app.config import BuilderArgs

    gpu, cpu = (yaml.safe_load((REPO / "serve_app" / name).read_text()) for name in ("config.yaml", "config.cpu.yaml"))
    app = ServeDeploySchema.model_validate(cpu).applications[0]
    assert {d.name: d for d in app.deployments}["Detector"].ray_actor_options.num_gpus == 0
    args = BuilderArgs.model_validate({**app.args, "media_roots": [str(REPO)]})
    assert args.detector.device == "cpu" and args.detector_num_gpus == 0
    assert app.import_path == gpu["applications"][0]["import_path"]


def test_serve_builder_rejects_bad_arguments():
    from pydantic import ValidationError

    from serve_app.app import app_builder

    with pytest.raises(ValidationError, match="media root"):
        app_builder({"media_roots": ["/definitely/not/here"]})
    with pytest.raises(ValidationError, match="extra"):
        app_builder({"media_rootz": ["/tmp"]})


def test_dcgm_exporter_and_monitors():
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in ALL}
    ds = docs[("DaemonSet", "dcgm-exporter")]["spec"]["template"]["spec"]
    assert ds["nodeSelector"] == {"hardware-type": "NVIDIAGPU"}
    assert ds["containers"][0]["ports"][0]["containerPort"] == 9400
    assert docs[("Service", "dcgm-exporter")]["spec"]["ports"][0]["port"] == 9400
    sm = docs[("ServiceMonitor", "dcgm-exporter")]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["spec"]["endpoints"][0]["port"] == "metrics"
    for role in ("head", "worker"):
        pm = docs[("PodMonitor", f"ray-{role}s" if role == "worker" else "ray-head")]
        assert pm["spec"]["selector"]["matchLabels"] == {"ray.io/node-type": role}
        assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    # every Ray container names the port the PodMonitors scrape
    for _, d in ALL:
        if d["kind"] in KUBERAY_KINDS:
            cluster = d["spec"].get("rayClusterConfig") or d["spec"].get("rayClusterSpec")
            for g in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
                ports = {p["name"]: p["containerPort"] for p in g["template"]["spec"]["containers"][0]["ports"]}
                assert ports["metrics"] == int(g["rayStartParams"]["metrics-export-port"])


def test_secrets_feed_the_app():
    secret = next(d for _, d in ALL if d["kind"] == "Secret")
    keys = set(secret["stringData"])
    assert {"postback-secret", "api-token", "database-url", "postgres-password"} <= keys
    for _, d in ALL:
        if d["kind"] in KUBERAY_KINDS:
            text = json.dumps(d)
            for key in ("postback-secret", "api-token", "database-url"):
                assert f'"key": "{key}"' in text


def test_cluster_yaml_validates_against_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    assert config["provider"]["type"] == "aws" and config["idle_timeout_minutes"] > 0
    assert config["available_node_types"]["gpu_worker"]["min_workers"] == 0
    assert config["available_node_types"]["gpu_worker"]["max_workers"] >= 1
    assert config["docker"]["image"].endswith(":0.1.0")
    validate_config(prepare_config(config))


def test_dockerfile_lints_and_copies_only_what_exists():
    hadolint = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run([str(hadolint), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (REPO / "Dockerfile").read_text()
    for line in text.splitlines():
        m = re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line.strip())
        if m:
            for src in m.group(1).split():
                assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
    for needle in (
        "AS build",
        "AS runtime",
        "HEALTHCHECK",
        "USER 1000",
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility,video",
        "fetch-model",
        "requirements.txt",
    ):
        assert needle in text


def project_metric_names() -> set[str]:
    """Every metric name the project exports, as Prometheus sees it (Ray adds "ray_" to Serve metrics)."""
    names = set()
    serve_src = (REPO / "serve_app" / "metrics.py").read_text()
    for kind, name in re.findall(r'(Counter|Gauge|Histogram)\(\s*"([a-z_]+)"', serve_src):
        base = "ray_" + name
        names |= {base + s for s in ("_bucket", "_sum", "_count")} if kind == "Histogram" else {base}
    push_src = (REPO / "clockwork" / "pushmetrics.py").read_text()
    for kind, name in re.findall(r'(Counter|Gauge)\(\s*"([a-z_]+)"', push_src):
        names.add(name if kind == "Gauge" or name.endswith("_total") else name + "_total")
    return names


DCGM = {
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_ENC_UTIL",
    "DCGM_FI_DEV_FB_FREE",
}


def dashboard_metric_names() -> set[str]:
    dash = json.loads((REPO / "monitoring" / "grafana" / "clockwork.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    return {m for e in exprs for m in re.findall(r"\b((?:ray_clockwork|clockwork|DCGM_FI)_[A-Za-z0-9_]+)", e)}


def test_grafana_dashboard_uses_only_exported_names():
    dash = json.loads((REPO / "monitoring" / "grafana" / "clockwork.json").read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"])
    used = dashboard_metric_names()
    unknown = used - project_metric_names() - DCGM
    assert not unknown, f"dashboard queries names nobody exports: {sorted(unknown)}"
    assert {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_DEC_UTIL", "DCGM_FI_DEV_FB_USED"} <= used
    assert not any(n.startswith("ray_clockwork_gpu") and n.startswith("DCGM") for n in used)


def test_prometheus_config_scrapes_ray_dcgm_and_pushgateway():
    config = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert {"ray", "dcgm", "pushgateway"} <= set(jobs)
    assert jobs["dcgm"]["static_configs"][0]["targets"][0].endswith(":9400")
    assert jobs["pushgateway"]["honor_labels"] is True
    promtool = Path("/usr/bin/promtool")
    if promtool.exists():
        proc = subprocess.run(
            [str(promtool), "check", "config", "--syntax-only", str(REPO / "monitoring" / "prometheus.yml")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bad_decoder_and_multiscale_arguments_are_refused_by_name():
    """A replica that may decode no chunk, or a negative rate of the other views, is refused when the app is built."""
    from pydantic import ValidationError

    from serve_app.config import BuilderArgs

    with pytest.raises(ValidationError, match=r"detector\.decoders\n  Input should be greater than or equal to 1"):
        BuilderArgs.model_validate({"detector": {"decoders": 0}})
    with pytest.raises(ValidationError, match=r"multiscale_fps\n  Input should be greater than or equal to 0"):
        BuilderArgs.model_validate({"multiscale_fps": -1})
    assert BuilderArgs.model_validate({"detector": {"decoders": 6}, "multiscale_fps": 0}).detector.decoders == 6


def test_chunk_caps_below_one_are_refused_by_name():
    """A cap that would let no chunk run (max_chunks_total) or a detector that takes no call is refused when the app
    is built; unset, the cap is off."""
    from pydantic import ValidationError

    from serve_app.config import BuilderArgs

    with pytest.raises(ValidationError, match=r"max_chunks_total\n  Input should be greater than or equal to 1"):
        BuilderArgs.model_validate({"max_chunks_total": 0})
    with pytest.raises(
        ValidationError, match=r"detector_max_ongoing_requests\n  Input should be greater than or equal to 1"
    ):
        BuilderArgs.model_validate({"detector_max_ongoing_requests": 0})
    args = BuilderArgs.model_validate({"max_chunks_total": 24, "detector_max_ongoing_requests": 4})
    assert args.app_args().max_chunks_total == 24 and BuilderArgs().max_chunks_total is None


def test_a_bad_nvdec_reuse_or_chunk_length_is_refused_by_name():
    """Chunk and decoder settings: a value that is not a yes/no, or a chunk of no length, is refused by
    name when the app is built."""
    from pydantic import ValidationError

    from serve_app.config import BuilderArgs

    with pytest.raises(ValidationError, match=r"detector\.nvdec_reuse\n  Input should be a valid boolean"):
        BuilderArgs.model_validate({"detector": {"nvdec_reuse": "sometimes"}})
    with pytest.raises(ValidationError, match=r"chunk_s\n  Input should be greater than 0"):
        BuilderArgs.model_validate({"chunk_s": 0})


def test_a_bad_nvdec_stream_or_video_check_limit_is_refused_by_name():
    """Stream and check settings: a stream switch that is not a yes/no, or no video check at a time (every POST
    would wait for ever), is refused by name when the app is built."""
    from pydantic import ValidationError

    from serve_app.config import BuilderArgs

    with pytest.raises(ValidationError, match=r"detector\.nvdec_stream\n  Input should be a valid boolean"):
        BuilderArgs.model_validate({"detector": {"nvdec_stream": "sometimes"}})
    with pytest.raises(ValidationError, match=r"video_checks_in_flight\n  Input should be greater than or equal to 1"):
        BuilderArgs.model_validate({"video_checks_in_flight": 0})
    assert BuilderArgs.model_validate({"video_checks_in_flight": 2}).app_args().video_checks_in_flight == 2
