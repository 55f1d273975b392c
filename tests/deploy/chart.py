"""Render the Helm chart with the real `helm` binary and look at what comes out."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "todo"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
MINIMAL_VALUES = CHART / "ci" / "minimal-values.yaml"
GITOPS_VALUES = CHART / "ci" / "gitops-values.yaml"  # layered on PRODUCTION_VALUES
GATEWAY_VALUES = CHART / "ci" / "gateway-values.yaml"  # layered on PRODUCTION_VALUES
RELEASE = "todo"

Manifest = dict[str, Any]


def helm_binary() -> str:
    """helm from PATH (`make test` puts .tools/k8s there) or from the tools folder."""
    found = shutil.which("helm") or str(ROOT / ".tools" / "k8s" / "helm")
    if not os.access(found, os.X_OK):
        message = "helm is not installed: run `make tools`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120)


def render(
    *values_files: Path, sets: tuple[str, ...] = (), show_only: str | None = None
) -> list[Manifest]:
    args = ["template", RELEASE, str(CHART), "--namespace", "todo"]
    for values in values_files:
        args += ["--values", str(values)]
    for assignment in sets:
        args += ["--set", assignment]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [manifest for manifest in manifests if manifest["kind"] == kind]


def component(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    """The one `kind` object whose app.kubernetes.io/component label is `name`."""
    found = [
        manifest
        for manifest in of_kind(manifests, kind)
        if manifest["metadata"].get("labels", {}).get("app.kubernetes.io/component") == name
    ]
    assert len(found) == 1, f"expected one {kind} for {name}, found {len(found)}"
    return found[0]


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "Pod":
        return dict(spec)
    return dict(spec["template"]["spec"])


def containers(workload: Manifest) -> list[dict[str, Any]]:
    """Every container of the pod, init containers first."""
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(workload: Manifest) -> dict[str, Any]:
    """The pod's one long-running container (not its init containers)."""
    (container,) = pod_spec(workload)["containers"]
    return dict(container)


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in ("Deployment", "Job", "Pod", "StatefulSet")]


def container_env(manifests: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets, resolved from the rendered ConfigMaps and Secrets
    (values from secrets that the chart does not render show as `<from NAME/KEY>`)."""
    import base64
    import re

    def config_map(name: str) -> dict[str, str]:
        for manifest in of_kind(manifests, "ConfigMap"):
            if manifest["metadata"]["name"] == name:
                return {key: str(value) for key, value in (manifest.get("data") or {}).items()}
        raise AssertionError(f"no ConfigMap {name} is rendered")

    def secret(name: str) -> dict[str, str] | None:
        for manifest in of_kind(manifests, "Secret"):
            if manifest["metadata"]["name"] == name:
                values = {k: str(v) for k, v in (manifest.get("stringData") or {}).items()}
                for key, value in (manifest.get("data") or {}).items():
                    values[key] = base64.b64decode(value).decode()
                return values
        return None

    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_map(source["configMapRef"]["name"]))
        elif "secretRef" in source:
            name = source["secretRef"]["name"]
            values = secret(name)
            assert values is not None, f"envFrom names Secret {name}, which is not rendered"
            env.update(values)
    for item in container.get("env", []):
        if "value" in item:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
            env[item["name"]] = value
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = config_map(ref["name"])[ref["key"]]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            values = secret(ref["name"])
            env[item["name"]] = (
                values[ref["key"]] if values is not None else f"<from {ref['name']}/{ref['key']}>"
            )
        else:
            env[item["name"]] = "<from the pod>"
    return env
