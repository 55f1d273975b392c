"""The chart follows `helm create`'s conventions where a user would look for them: `replicaCount`,
an icon in Chart.yaml, and images that can be pinned by digest."""

from __future__ import annotations

import base64

import pytest
import yaml

from tests.deploy.chart import CHART, PRODUCTION_VALUES, component, containers, render, workloads

DIGEST = "sha256:" + "0123456789abcdef" * 4


def api_replicas(*sets: str) -> int | None:
    deployment = component(render(sets=sets), "Deployment", "api")
    replicas = deployment["spec"].get("replicas")
    return None if replicas is None else int(replicas)


def test_replica_count_sets_the_api_replicas_and_wins_over_api_replicas() -> None:
    assert api_replicas() == 2  # api.replicas, with replicaCount null
    assert api_replicas("replicaCount=5") == 5
    assert api_replicas("replicaCount=0", "api.replicas=4") == 0
    assert api_replicas("api.replicas=4") == 4


def test_with_autoscaling_neither_sets_the_replicas() -> None:
    assert api_replicas("replicaCount=5", "api.autoscaling.enabled=true") is None


def test_replica_count_scales_only_the_api() -> None:
    manifests = render(sets=("replicaCount=5",))
    assert component(manifests, "Deployment", "worker")["spec"]["replicas"] == 1
    assert component(manifests, "Deployment", "scheduler")["spec"]["replicas"] == 1


def test_the_chart_has_an_svg_icon() -> None:
    icon = yaml.safe_load((CHART / "Chart.yaml").read_text())["icon"]
    prefix = "data:image/svg+xml;base64,"
    assert icon.startswith(prefix)
    assert base64.b64decode(icon.removeprefix(prefix)).startswith(b"<svg ")


@pytest.mark.parametrize("name", ["api", "worker", "scheduler"])
def test_a_digest_pins_the_image_of_its_component(name: str) -> None:
    manifests = render(sets=(f"{name}.image.digest={DIGEST}",))
    for workload in workloads(manifests):
        for container in containers(workload):
            repository = container["image"].split(":", 1)[0]
            pinned = container["image"].endswith(f"@{DIGEST}")
            assert pinned == (repository == f"todo-{name}"), container["image"]


def test_the_production_values_pin_every_image() -> None:
    for workload in workloads(render(PRODUCTION_VALUES)):
        for container in containers(workload):
            assert "@sha256:" in container["image"], container["image"]
