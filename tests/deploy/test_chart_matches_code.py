"""The rendered chart agrees with the code: the commands exist in the images, the settings exist in
Settings, the probes hit real endpoints on real ports, and every pod meets Pod Security
"restricted" with a read-only root filesystem."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.chart import (
    GITOPS_VALUES,
    MINIMAL_VALUES,
    PRODUCTION_VALUES,
    ROOT,
    Manifest,
    component,
    container_env,
    containers,
    main_container,
    of_kind,
    pod_spec,
    render,
    workloads,
)
from tests.deploy.dockerfile import parse_stages
from todo_common.celery_app import TASK_TIME_LIMIT
from todo_common.settings import Settings

VALUES = {
    "default": (),
    "production": (PRODUCTION_VALUES,),
    "minimal": (MINIMAL_VALUES,),
    "gitops": (PRODUCTION_VALUES, GITOPS_VALUES),
}
SETTINGS = {f"TODO_{name.upper()}" for name in Settings.model_fields}
# Endpoints the worker's and scheduler's metrics server answers (todo_common.metrics).
METRICS_SERVER_PATHS = {"/metrics", "/healthz"}


def _scripts(pyproject: Path) -> set[str]:
    return set(tomllib.loads(pyproject.read_text())["project"].get("scripts", {}))


def image_scripts() -> dict[str, set[str]]:
    """Console scripts per image repository, from the Dockerfile's targets and the packages."""
    common = _scripts(ROOT / "libs" / "common" / "pyproject.toml")
    scripts = {}
    for service in ("api", "worker", "scheduler"):
        assert service in parse_stages(), f"the Dockerfile has no {service} target"
        own = _scripts(ROOT / "services" / service / "pyproject.toml")
        scripts[f"todo-{service}"] = own | common
    return scripts


def _repository(image: str) -> str:
    return image.rsplit("/", 1)[-1].split(":", 1)[0]


@pytest.fixture(params=list(VALUES))
def manifests(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(*VALUES[request.param])


def test_every_command_is_a_console_script_of_its_image(manifests: list[Manifest]) -> None:
    scripts = image_scripts()
    for workload in workloads(manifests):
        is_helm_test = "test" in workload["metadata"].get("annotations", {}).get("helm.sh/hook", "")
        for container in containers(workload):
            command = container.get("command") or []
            assert command, f"{workload['metadata']['name']} relies on the image's CMD"
            if is_helm_test:
                assert command[0] == "python"  # the api image's interpreter runs the probe
                continue
            available = scripts[_repository(container["image"])]
            assert command[0] in available, (workload["metadata"]["name"], command)


def test_every_setting_is_a_settings_field(manifests: list[Manifest]) -> None:
    named = set()
    for config_map in of_kind(manifests, "ConfigMap"):
        named |= {key for key in (config_map.get("data") or {}) if key.startswith("TODO_")}
    for workload in workloads(manifests):
        for container in containers(workload):
            named |= {item["name"] for item in container.get("env", [])}
    todo_names = {name for name in named if name.startswith("TODO_")}
    assert todo_names <= SETTINGS, todo_names - SETTINGS
    assert not any(name.startswith("TODO_TEST_") for name in todo_names)


def test_the_settings_load_in_production_mode(manifests: list[Manifest]) -> None:
    api = component(manifests, "Deployment", "api")
    env = container_env(manifests, main_container(api))
    # Values kept in secrets the chart does not render stand in as plausible ones.
    stand_ins = {
        "secret_key": "s" * 40,
        "database_url": "postgresql+asyncpg://todo:pw@db:5432/todo",
        "redis_url": "redis://redis:6379/0",
    }
    fields = {
        field: stand_ins[field] if "<from" in value else value
        for field, value in (
            (name.removeprefix("TODO_").lower(), value)
            for name, value in env.items()
            if name.startswith("TODO_")
        )
    }
    settings = Settings(**fields)  # type: ignore[arg-type]
    assert settings.env == "production"
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.redis_url


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def test_api_probes_hit_real_routes_on_the_bound_port(manifests: list[Manifest]) -> None:
    from todo_api.app import create_app

    rules = {rule.rule for rule in create_app(Settings()).url_map.iter_rules()}
    container = main_container(component(manifests, "Deployment", "api"))
    bind = container["command"][container["command"].index("--bind") + 1]
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in rules
        assert _port(container, get["port"]) == int(bind.rsplit(":", 1)[1])
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("name", ["worker", "scheduler"])
def test_worker_and_scheduler_probes_hit_their_metrics_server(
    manifests: list[Manifest], name: str
) -> None:
    container = main_container(component(manifests, "Deployment", name))
    env = container_env(manifests, container)
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in METRICS_SERVER_PATHS
        assert _port(container, get["port"]) == int(env["TODO_METRICS_PORT"])


def test_the_scheduler_cannot_scale(manifests: list[Manifest]) -> None:
    scheduler = component(manifests, "Deployment", "scheduler")
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"]["type"] == "Recreate"
    for autoscaler in of_kind(manifests, "HorizontalPodAutoscaler"):
        assert autoscaler["spec"]["scaleTargetRef"]["name"] != scheduler["metadata"]["name"]


def test_shutdown_fits_the_grace_periods(manifests: list[Manifest]) -> None:
    api = component(manifests, "Deployment", "api")
    container = main_container(api)
    env = container_env(manifests, container)
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    needed = int(pause[1]) + float(env["TODO_GRACEFUL_TIMEOUT"])
    assert pod_spec(api)["terminationGracePeriodSeconds"] > needed
    worker = component(manifests, "Deployment", "worker")
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > TASK_TIME_LIMIT


def test_every_pod_is_restricted_and_read_only(manifests: list[Manifest]) -> None:
    for workload in workloads(manifests):
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        pod = spec.get("securityContext", {})
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        writable = {volume["name"] for volume in spec.get("volumes", []) if "emptyDir" in volume}
        for container in containers(workload):
            own = container.get("securityContext", {})
            merged = {**pod, **own}
            assert merged.get("runAsNonRoot") is True, name
            assert isinstance(merged.get("runAsUser"), int) and merged["runAsUser"] > 0, name
            assert merged.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
            assert own.get("allowPrivilegeEscalation") is False, name
            assert own.get("privileged") is not True, name
            assert "ALL" in own.get("capabilities", {}).get("drop", []), name
            assert not own.get("capabilities", {}).get("add"), name
            assert own.get("readOnlyRootFilesystem") is True, name
            resources = container.get("resources", {})
            assert resources.get("requests") and resources.get("limits"), name
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in writable, name
            env = container_env(manifests, container)
            for variable in ("PROMETHEUS_MULTIPROC_DIR", "TODO_STATE_DIR"):
                if variable in env:
                    assert mounts.get(env[variable]) in writable, (name, variable)


def test_labels_are_the_standard_ones(manifests: list[Manifest]) -> None:
    for manifest in manifests:
        labels = manifest["metadata"].get("labels", {})
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/component",
        ):
            assert key in labels, (manifest["kind"], manifest["metadata"]["name"], key)


def test_templates_are_one_resource_per_file_in_component_folders() -> None:
    templates = ROOT / "deploy" / "helm" / "todo" / "templates"
    for path in templates.rglob("*.yaml"):
        assert path.parent != templates, f"{path.name} is not in a component folder"
        documents = [d for d in re.split(r"^---\s*$", path.read_text(), flags=re.M) if d.strip()]
        assert len(documents) == 1, path
    helpers = (templates / "_helpers.tpl").read_text()
    names = re.findall(r'define "([^"]+)"', helpers)
    assert names and all(name.startswith("todo.") for name in names)


def test_every_todoctl_command_is_a_subcommand_with_those_options(
    manifests: list[Manifest],
) -> None:
    """`todoctl SUBCOMMAND --option VALUE` in the chart parses (the migrations Job's, and with
    useHooks=false the pods' wait-for-migrations init containers)."""
    from todo_common.cli import _parser

    commands = {
        tuple(container["command"])
        for workload in workloads(manifests)
        for container in containers(workload)
        if container.get("command", [""])[0] == "todoctl"
    }
    assert commands
    plain_jobs = [
        job
        for job in of_kind(manifests, "Job")
        if "helm.sh/hook" not in (job["metadata"].get("annotations") or {})
    ]
    if plain_jobs:  # useHooks=false: the pods wait for the Job
        assert ("todoctl", "wait-for-migrations", "--timeout", "300") in commands, commands
    for command in commands:
        _parser().parse_args(command[1:])  # SystemExit(2) on an unknown subcommand or option
