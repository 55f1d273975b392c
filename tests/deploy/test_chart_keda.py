"""The worker's optional KEDA ScaledObject: off by default, scales the worker Deployment on the
queue depth the scheduler exports, validates against KEDA's own ScaledObject schema, and refuses
to render beside the CPU HPA or without a Prometheus to ask."""

from __future__ import annotations

import copy

import pytest

from tests.deploy.chart import CHART, component, helm, of_kind, render
from tests.deploy.keda import validate

KEDA = (
    "worker.keda.enabled=true",
    "worker.keda.prometheusAddress=http://prometheus-operated.monitoring:9090",
)


def test_off_by_default() -> None:
    assert of_kind(render(), "ScaledObject") == []


def test_scales_the_worker_on_the_queue_depth_and_validates() -> None:
    manifests = render(sets=KEDA)
    (scaled,) = of_kind(manifests, "ScaledObject")
    worker = component(manifests, "Deployment", "worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert "replicas" not in worker["spec"]  # KEDA's HPA owns the count
    hpas = of_kind(manifests, "HorizontalPodAutoscaler")
    assert worker["metadata"]["name"] not in {h["spec"]["scaleTargetRef"]["name"] for h in hpas}
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert "todo_queue_length" in trigger["metadata"]["query"]
    assert trigger["metadata"]["ignoreNullValues"] == "false"  # unknown depth: keep replicas
    assert validate(scaled) == []


def test_the_validator_catches_a_wrong_object() -> None:
    (scaled,) = of_kind(render(sets=KEDA), "ScaledObject")
    broken = copy.deepcopy(scaled)
    broken["spec"]["minReplicaCount"] = "one"
    del broken["spec"]["scaleTargetRef"]["name"]
    complaints = {error["instancePath"] for error in validate(broken)}
    assert {"/spec/minReplicaCount", "/spec/scaleTargetRef"} <= complaints


@pytest.mark.parametrize(
    ("sets", "complaint"),
    [
        (("worker.keda.enabled=true",), "worker.keda.prometheusAddress is required"),
        ((*KEDA, "worker.autoscaling.enabled=true"), "are exclusive"),
    ],
)
def test_bad_values_are_refused(sets: tuple[str, ...], complaint: str) -> None:
    args = ["template", "todo", str(CHART)]
    for assignment in sets:
        args += ["--set", assignment]
    result = helm(*args)
    assert result.returncode != 0 and complaint in result.stderr
