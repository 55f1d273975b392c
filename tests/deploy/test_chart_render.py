"""The chart lints, renders with every values file we ship, validates against the Kubernetes API
schemas of the oldest and newest versions we support, and refuses bad values."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError

from tests.deploy.chart import (
    CHART,
    MINIMAL_VALUES,
    PRODUCTION_VALUES,
    component,
    containers,
    helm,
    of_kind,
    render,
)

KUBERNETES_VERSIONS = ("1.29.0", "1.35.0")
VALUES = {"default": (), "production": (PRODUCTION_VALUES,), "minimal": (MINIMAL_VALUES,)}
# Custom resources (the Prometheus operator's) have no schema in kubernetes-validate.
CUSTOM_GROUPS = ("monitoring.coreos.com/",)


@pytest.mark.parametrize("values", list(VALUES))
def test_helm_lint_strict(values: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for path in VALUES[values]:
        args += ["--values", str(path)]
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", list(VALUES))
def test_every_rendered_object_validates(values: str, version: str) -> None:
    manifests = render(*VALUES[values])
    assert manifests
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except SchemaNotFoundError:
            assert manifest["apiVersion"].startswith(CUSTOM_GROUPS), manifest["kind"]


def test_production_values_turn_on_what_they_claim() -> None:
    manifests = render(PRODUCTION_VALUES)
    kinds = {manifest["kind"] for manifest in manifests}
    assert {"HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy"} <= kinds
    (ingress,) = of_kind(manifests, "Ingress")
    assert ingress["spec"]["tls"]
    # Every secret comes from Secrets made outside the chart: the chart renders none of its own.
    assert of_kind(manifests, "Secret") == []
    (api,) = containers(component(manifests, "Deployment", "api"))
    refs = {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in api["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert refs["DATABASE_PASSWORD"] == {"name": "todo-postgres", "key": "password"}
    assert refs["TODO_SECRET_KEY"]["name"] == refs["TODO_REDIS_URL"]["name"] == "todo-secrets"


def test_ingress_routes_only_the_api(tmp_path: Path) -> None:
    (ingress,) = of_kind(render(), "Ingress")
    paths = {path["path"] for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]}
    assert paths == {"/api", "/auth"}


@pytest.mark.parametrize(
    ("assignment", "complaint"),
    [
        ("api.replicas=two", "at '/api/replicas': got string, want integer"),
        ("unknownKey=1", "additional properties 'unknownKey' not allowed"),
        ("scheduler.replicas=2", "at '/scheduler': additional properties 'replicas' not allowed"),
        ("api.service.port=http", "at '/api/service/port': got string, want integer"),
    ],
)
def test_bad_values_are_refused(assignment: str, complaint: str) -> None:
    result = helm("template", "todo", str(CHART), "--set", assignment)
    assert result.returncode != 0
    assert complaint in result.stderr, result.stderr


def test_migrations_can_run_without_hooks() -> None:
    hooked = [job for job in of_kind(render(), "Job")]
    plain = [job for job in of_kind(render(sets=("migrations.useHooks=false",)), "Job")]
    assert any("helm.sh/hook" in job["metadata"].get("annotations", {}) for job in hooked)
    assert plain and all(
        "helm.sh/hook" not in (job["metadata"].get("annotations") or {}) for job in plain
    )
    hooks = hooked[0]["metadata"]["annotations"]["helm.sh/hook"]
    assert set(hooks.split(",")) == {"pre-install", "pre-upgrade"}
