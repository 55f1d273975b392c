"""The rendered chart's pods run as containers in the test engine, the way a kubelet runs them.

Each container gets exactly what its manifest says: command and args, env and envFrom (ConfigMaps
and Secrets resolved from the same render), the merged pod and container securityContext
(`runAsUser`/`runAsGroup`/`fsGroup`, read-only root filesystem, dropped capabilities,
no-new-privileges), CPU and memory limits, and its emptyDir volumes as writable folders made as
the kubelet makes them (mode 0777, group `fsGroup` with the setgid bit), shared by the pod's
containers. Pods use the host network, so a Service name resolves to 127.0.0.1 (`--add-host`) and
`ServiceProxy` forwards a Service's port to its pod's port, as kube-proxy would.

Init containers run one after another, each to exit 0, before the main container starts. `stop()`
ends a pod as the kubelet does: the preStop hook, then SIGTERM, then SIGKILL when the grace period
(counted from the start of preStop) runs out.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.deploy.chart import Manifest, container_env, pod_spec
from tests.deploy.engine import Engine
from tests.support import local_http

_MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


def memory_bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * _MEMORY_UNITS.get(unit, 1)


def cpus(quantity: str) -> str:
    return str(int(quantity[:-1]) / 1000) if quantity.endswith("m") else quantity


class Pod:
    """One pod of the render: `start()` runs its init containers then its main container."""

    def __init__(
        self,
        engine: Engine,
        manifests: list[Manifest],
        workload: Manifest,
        folder: Path,
        services: tuple[str, ...] = (),
    ) -> None:
        self.engine = engine
        self.manifests = manifests
        self.spec = pod_spec(workload)
        self.name = workload["metadata"]["name"]
        self.grace = int(self.spec.get("terminationGracePeriodSeconds", 30))
        self.services = services
        self.volumes = self._make_volumes(folder / self.name)
        (self.main,) = self.spec["containers"]
        self.container_names: list[str] = []

    def _make_volumes(self, folder: Path) -> dict[str, Path]:
        group = self.spec.get("securityContext", {}).get("fsGroup")
        volumes = {}
        for volume in self.spec.get("volumes", []):
            assert set(volume) == {"name", "emptyDir"}, f"only emptyDir volumes here: {volume}"
            path = folder / volume["name"]
            path.mkdir(parents=True)
            if group is not None:
                os.chown(path, 0, int(group))
            path.chmod(0o2777 if group is not None else 0o777)
            volumes[volume["name"]] = path
        return volumes

    def container_name(self, container: dict[str, Any]) -> str:
        return f"{self.name}-{container['name']}"

    def run_arguments(self, container: dict[str, Any]) -> list[str]:
        """`docker run` arguments for `container`, from its manifest and its pod's."""
        pod_security = self.spec.get("securityContext", {})
        security = {**pod_security, **container.get("securityContext", {})}
        arguments = [f"--name={self.container_name(container)}", "--network=host"]
        if "runAsUser" in security:
            arguments.append(f"--user={security['runAsUser']}:{security.get('runAsGroup', 0)}")
        if "fsGroup" in pod_security:
            arguments.append(f"--group-add={pod_security['fsGroup']}")
        if security.get("readOnlyRootFilesystem"):
            arguments.append("--read-only")
        for capability in security.get("capabilities", {}).get("drop", []):
            arguments.append(f"--cap-drop={capability}")
        for capability in security.get("capabilities", {}).get("add", []):
            arguments.append(f"--cap-add={capability}")
        if security.get("allowPrivilegeEscalation") is False:
            arguments.append("--security-opt=no-new-privileges")
        limits = container.get("resources", {}).get("limits", {})
        if "cpu" in limits:
            arguments.append(f"--cpus={cpus(str(limits['cpu']))}")
        if "memory" in limits:
            arguments.append(f"--memory={memory_bytes(str(limits['memory']))}")
        for name, value in container_env(self.manifests, container).items():
            assert not value.startswith("<from "), f"{name} is not resolvable here: {value}"
            arguments.append(f"--env={name}={value}")
        for mount in container.get("volumeMounts", []):
            source = self.volumes[mount["name"]]
            arguments.append(f"--mount=type=bind,source={source},target={mount['mountPath']}")
        arguments += [f"--add-host={service}:127.0.0.1" for service in self.services]
        command = container.get("command", [])
        if command:
            arguments.append(f"--entrypoint={command[0]}")
        return [*arguments, container["image"], *command[1:], *container.get("args", [])]

    def run_to_completion(self, container: dict[str, Any], timeout: float = 120) -> int:
        """Run `container` until it exits; its exit status."""
        name = self.container_name(container)
        self.engine.docker("run", "--detach", *self.run_arguments(container))
        self.container_names.append(name)
        waited = self.engine.docker("wait", name, timeout=timeout)
        return int(waited.stdout.strip())

    def start_init_containers(self) -> threading.Thread:
        """Run the init containers in order, in the background (they may wait on something);
        the thread ends once the last one exited, each with 0 (else `init_failure` says)."""
        self.init_failure: str | None = None

        def run() -> None:
            for container in self.spec.get("initContainers", []):
                status = self.run_to_completion(container, timeout=600)
                if status != 0:
                    self.init_failure = f"{container['name']}: {status}, {self.logs(container)}"
                    return

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def start(self) -> None:
        """Init containers to completion, then the main container, detached."""
        inits = self.start_init_containers()
        inits.join(600)
        assert self.init_failure is None, self.init_failure
        self.start_main()

    def start_main(self) -> None:
        self.engine.docker("run", "--detach", *self.run_arguments(self.main))
        self.container_names.append(self.container_name(self.main))

    def state(self, container: dict[str, Any] | None = None) -> dict[str, Any]:
        import json

        name = self.container_name(container or self.main)
        inspected = self.engine.docker("inspect", "--format={{json .State}}", name)
        return dict(json.loads(inspected.stdout))

    def logs(self, container: dict[str, Any] | None = None) -> str:
        name = self.container_name(container or self.main)
        result = self.engine.docker("logs", name, check=False)
        return result.stdout + result.stderr

    def port(self, name_or_number: str | int) -> int:
        if isinstance(name_or_number, int):
            return name_or_number
        (port,) = [p for p in self.main.get("ports", []) if p["name"] == name_or_number]
        return int(port["containerPort"])

    def probe(self, kind: str) -> bool | None:
        """The main container's `kind` probe (livenessProbe, readinessProbe) passes now; None
        when it has no such probe."""
        probe = self.main.get(kind)
        if probe is None:
            return None
        action = probe["httpGet"]
        url = f"http://127.0.0.1:{self.port(action['port'])}{action['path']}"
        try:
            status = local_http.get(url, timeout=float(probe.get("timeoutSeconds", 1))).status_code
        except httpx.HTTPError:
            return False
        return 200 <= status < 400

    def stop(self, before_sigterm: Callable[[], None] | None = None) -> tuple[int, float]:
        """preStop, SIGTERM, then SIGKILL at the grace period; (exit status, seconds taken).
        `before_sigterm` runs between the preStop hook and the signal."""
        name = self.container_name(self.main)
        started = time.monotonic()
        pre_stop = self.main.get("lifecycle", {}).get("preStop")
        if pre_stop is not None:
            self.engine.docker("exec", name, *pre_stop["exec"]["command"], timeout=self.grace)
        if before_sigterm is not None:
            before_sigterm()
        self.engine.docker("kill", "--signal=TERM", name)
        remaining = self.grace - (time.monotonic() - started)
        try:
            status = int(self.engine.docker("wait", name, timeout=max(remaining, 1)).stdout)
        except Exception:  # the grace period ran out: the kubelet kills
            self.engine.docker("kill", "--signal=KILL", name, check=False)
            status = int(self.engine.docker("wait", name).stdout)
        return status, time.monotonic() - started

    def remove(self) -> None:
        for name in self.container_names:
            self.engine.docker("rm", "--force", name, check=False)


class ServiceProxy:
    """A Service's port forwarded to its pod's port on 127.0.0.1, as kube-proxy does."""

    def __init__(self, port: int, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        with client, contextlib.suppress(OSError):
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            with upstream:
                pump = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
                pump.start()
                _pump(client, upstream)
                pump.join(10)

    def close(self) -> None:
        self.listener.close()


def _pump(source: socket.socket, destination: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            destination.sendall(data)
        destination.shutdown(socket.SHUT_WR)
