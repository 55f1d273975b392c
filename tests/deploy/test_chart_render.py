"""The chart lints, renders with every values file we ship, validates against the Kubernetes API
schemas of the oldest and newest versions we support, and refuses bad values."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError

from tests.deploy.chart import (
    CHART,
    GATEWAY_VALUES,
    GITOPS_VALUES,
    MINIMAL_VALUES,
    PRODUCTION_VALUES,
    component,
    container_env,
    containers,
    helm,
    of_kind,
    pod_spec,
    render,
)

KUBERNETES_VERSIONS = ("1.29.0", "1.35.0")
VALUES = {
    "default": (),
    "production": (PRODUCTION_VALUES,),
    "minimal": (MINIMAL_VALUES,),
    "gitops": (PRODUCTION_VALUES, GITOPS_VALUES),
    "gateway": (PRODUCTION_VALUES, GATEWAY_VALUES),
}
# Custom resources have no schema in kubernetes-validate: the Prometheus operator's, and the
# Gateway API's HTTPRoute (test_chart_routing.py validates it against the CRD's own schema).
CUSTOM_GROUPS = ("monitoring.coreos.com/", "gateway.networking.k8s.io/")


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


DEPLOYMENTS = ("api", "worker", "scheduler")
# The settings the init container needs to load Settings and read the schema, as the main one has.
DATABASE_ENV = ("TODO_DATABASE_URL", "DATABASE_PASSWORD", "TODO_SECRET_KEY", "TODO_ENV")


@pytest.mark.parametrize("values", ["default", "gitops"])
def test_without_hooks_the_pods_wait_for_the_migrations(values: str) -> None:
    manifests = render(*VALUES[values], sets=("migrations.useHooks=false",))
    timeout = "300" if values == "gitops" else "600"
    for name in DEPLOYMENTS:
        spec = pod_spec(component(manifests, "Deployment", name))
        (wait,) = spec["initContainers"]
        (main,) = spec["containers"]
        assert wait["name"] == "wait-for-migrations"
        assert wait["command"] == ["todoctl", "wait-for-migrations", "--timeout", timeout]
        assert wait["image"] == main["image"]
        assert wait["imagePullPolicy"] == main["imagePullPolicy"]
        assert wait["envFrom"] == main["envFrom"]
        wait_env, main_env = container_env(manifests, wait), container_env(manifests, main)
        assert wait_env["TODO_DATABASE_URL"].startswith("postgresql+asyncpg://")
        for variable in DATABASE_ENV:
            assert wait_env.get(variable) == main_env.get(variable), (name, variable)
        assert wait["securityContext"] == main["securityContext"]
        assert wait["volumeMounts"] == main["volumeMounts"]
        limits = wait["resources"]["limits"]
        assert limits["memory"] == "128Mi" and limits["cpu"] == "200m"


@pytest.mark.parametrize(
    "sets",
    [(), ("migrations.useHooks=true",), ("migrations.useHooks=false", "migrations.enabled=false")],
)
def test_with_hooks_or_without_migrations_the_pods_do_not_wait(sets: tuple[str, ...]) -> None:
    manifests = render(sets=sets)
    for name in DEPLOYMENTS:
        assert "initContainers" not in pod_spec(component(manifests, "Deployment", name))
