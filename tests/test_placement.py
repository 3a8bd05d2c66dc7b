"""Fractional detector replicas spread over GPUs: 8 replicas at 0.25 GPU on a node that declares 2 GPUs
land four to a card (and the API runs as two replicas). Ray schedules by count, so this runs without GPUs (torch still
sees none)."""

from __future__ import annotations

import collections

import pytest

pytestmark = pytest.mark.slow


def test_quarter_gpu_replicas_fill_two_cards_four_each(ray_cluster, serve_port, samples_dir, tmp_path):
    import ray
    from ray import serve

    from serve_app.app import app_builder

    assert ray.cluster_resources().get("GPU") == 2
    serve.run(
        app_builder(
            {
                "media_roots": [str(samples_dir)],
                "database_url": f"sqlite:///{tmp_path}/c.sqlite",
                "detector_num_gpus": 0.25,
                "detector_replicas": 8,
                "detector_num_cpus": 0.25,
                "ingress_replicas": 2,
            }
        ),
        name="placement",
        route_prefix="/placement",
    )
    try:
        status = serve.status().applications["placement"].deployments["Detector"]
        assert status.replica_states.get("RUNNING") == 8
        assert serve.status().applications["placement"].deployments["Ingress"].replica_states.get("RUNNING") == 2
        assert ray.available_resources().get("GPU", 0) == 0
        handle = serve.get_deployment_handle("Detector", app_name="placement")
        assert len(handle.info.remote().result()["gpu_ids"]) == 1  # the replica's own view of its card
        per_gpu = collections.Counter()
        from ray.util.state import list_actors

        replicas = [
            a
            for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
            if a.class_name == "ServeReplica:placement:Detector"
        ]
        assert len(replicas) == 8
        for a in replicas:
            actor = ray.get_actor(a.name, namespace="serve")
            ids = ray.get(actor.__ray_call__.remote(lambda self: [str(g) for g in ray.get_gpu_ids()]))
            assert len(ids) == 1
            per_gpu[ids[0]] += 1
        assert sorted(per_gpu.values()) == [4, 4], per_gpu
    finally:
        serve.delete("placement")
