"""A container engine of the tests' own, and the three images built in it from the real Dockerfile.

`Engine.start()` runs Debian's `dockerd` on a socket and data root of its own (host network only:
no bridge, no iptables), so it never touches a docker the machine may already run. No registry is
reachable here, so the Dockerfile's two base images are stand-ins made locally and passed as
build arguments (nothing else about the build changes):

- Debian bookworm from `debootstrap --variant=minbase`, imported as an image;
- "python:3.11-slim-bookworm" made from it: Debian's Python 3.11 where the official image keeps
  its interpreter (/usr/local/bin/python3, python3.11, python), with the host's extra CA
  certificates trusted (`SSL_CERT_FILE`), since package downloads here pass through a proxy that
  re-signs them (a user's real base needs none of this);
- "uv" from PyPI's musllinux wheel: the same static binary the official uv image carries, at /uv.

Each stand-in is saved as a tarball in a cache of the machine's, outside any clone
(`$XDG_CACHE_HOME/todo-tests/containers`, or ~/.cache/...; TODO_TEST_IMAGE_CACHE overrides), as
the images a registry hands out would be: a fresh clone loads them instead of making them again.
The engine's data root (images and BuildKit's layer cache) is in that cache too, so a fresh clone
rebuilds only the layers whose inputs changed (BuildKit keys a COPY by its files' content). One run
at a time holds it (a lock that dockerd itself keeps open, so a dockerd left behind still holds
it); a run beside it uses a data root of its clone's own, under .tools/containers/ (git-ignored).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".tools" / "containers"
BASE_IMAGE_CACHE = Path(
    os.environ.get("TODO_TEST_IMAGE_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "todo-tests"
    / "containers"
)
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
HOST_CA_FOLDER = Path("/usr/local/share/ca-certificates")
DEBIAN_CLI = "/usr/bin/docker"
UV_VERSION = "0.13.9"  # the Dockerfile's default UV_IMAGE tag
DEBIAN_IMAGE = "todo-stand-in/debian:bookworm"
PYTHON_IMAGE = "todo-stand-in/python:3.11-slim-bookworm"
UV_IMAGE = f"todo-stand-in/uv:{UV_VERSION}"
SERVICES = ("api", "worker", "scheduler")
DEBOOTSTRAP = ("debootstrap", "--variant=minbase", "bookworm")
DEBIAN_MIRROR = "http://deb.debian.org/debian"

PYTHON_STAND_IN = f"""\
FROM {DEBIAN_IMAGE}
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update -qq \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
        python3 ca-certificates \\
    && update-ca-certificates \\
    && rm -rf /var/lib/apt/lists/* \\
    && ln -s /usr/bin/python3.11 /usr/local/bin/python3.11 \\
    && ln -s /usr/bin/python3.11 /usr/local/bin/python3 \\
    && ln -s /usr/bin/python3.11 /usr/local/bin/python
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt LANG=C.UTF-8
CMD ["python3"]
"""


def skip_or_fail(reason: str) -> None:
    """Skip: no container engine can run here; under CI=true that is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the container tier must run)")
    pytest.skip(reason)


def image_tag(service: str) -> str:
    return f"todo-{service}:test"  # as `make image TAG=test` tags them


class Engine:
    """dockerd on a socket of its own; `docker(...)` runs the CLI that came with it."""

    def __init__(self) -> None:
        dockerd = shutil.which("dockerd")
        if dockerd is None or os.geteuid() != 0:
            skip_or_fail("no container engine: dockerd (Debian's docker.io) needs root here")
        assert dockerd is not None
        self.dockerd = dockerd
        # Debian's CLI (the package's /usr/bin/docker) has BuildKit built in; a newer CLI found
        # first on PATH may lack its buildx plugin and refuse `RUN --mount`.
        cli = DEBIAN_CLI if os.access(DEBIAN_CLI, os.X_OK) else shutil.which("docker")
        if cli is None:
            skip_or_fail("no docker CLI (Debian's docker.io)")
        self.cli = str(cli)
        # A unix socket path must stay under 108 bytes: the runtime state goes under /tmp.
        self.run_folder = Path(tempfile.mkdtemp(prefix="todo-dockerd-"))
        self.socket = self.run_folder / "docker.sock"
        self.log_path = CACHE / "dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._data_root_lock: IO[str] | None = None

    def _claim_data_root(self) -> Path:
        """The machine's shared data root, locked for this run; or this clone's own while
        another run holds it."""
        BASE_IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
        lock = (BASE_IMAGE_CACHE / "docker.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return CACHE / "docker"
        self._data_root_lock = lock
        return BASE_IMAGE_CACHE / "docker"

    def start(self) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        data_root = self._claim_data_root()
        held = (self._data_root_lock.fileno(),) if self._data_root_lock else ()
        self.process = subprocess.Popen(
            [
                self.dockerd,
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                f"--data-root={data_root}",
                f"--exec-root={self.run_folder / 'exec'}",
                f"--pidfile={self.run_folder / 'dockerd.pid'}",
                f"--host=unix://{self.socket}",
            ],
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            pass_fds=held,  # the lock lives as long as dockerd does
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                skip_or_fail(f"dockerd exited at start: {self.log_path.read_text()[-2000:]}")
            if self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        skip_or_fail("dockerd did not answer within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._data_root_lock is not None:
            self._data_root_lock.close()
        shutil.rmtree(self.run_folder, ignore_errors=True)

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.cli, f"--host=unix://{self.socket}", *args],
            capture_output=True,
            text=input is None,
            input=input,
            timeout=timeout,
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {result.returncode}\n{result.stderr}")
        return result

    def has_image(self, reference: str) -> bool:
        return self.docker("image", "inspect", reference, check=False).returncode == 0

    # ---- stand-in base images ----------------------------------------------------------------

    def load_or_make(self, reference: str, make: Callable[[], None], recipe: str) -> None:
        """`reference` in the engine: already there, or loaded from its tarball in the machine's
        cache, or made (by `make`) and then saved there for the next run and the next clone. The
        tarball's name holds a digest of `recipe`: a changed recipe makes the image again."""
        digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
        name = reference.replace("/", "_").replace(":", "_")
        tarball = BASE_IMAGE_CACHE / f"{name}-{digest}.tar"
        if self.has_image(reference):
            return
        if tarball.exists():
            self.docker("load", "--input", str(tarball), timeout=300)
            return
        make()
        BASE_IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed: a run beside this one never loads half a tarball.
        partial = tarball.with_name(f"{tarball.name}.{os.getpid()}.partial")
        self.docker("save", "--output", str(partial), reference, timeout=300)
        partial.replace(tarball)

    def base_images(self) -> dict[str, str]:
        """The build arguments that swap the Dockerfile's base images for the local stand-ins."""
        self.load_or_make(DEBIAN_IMAGE, self._make_debian, " ".join(DEBOOTSTRAP))
        self.load_or_make(PYTHON_IMAGE, self._make_python, PYTHON_STAND_IN)
        self.load_or_make(UV_IMAGE, self._make_uv, f"the musllinux wheel of uv {UV_VERSION}")
        return {"PYTHON_IMAGE": PYTHON_IMAGE, "UV_IMAGE": UV_IMAGE}

    def _make_debian(self) -> None:
        rootfs = Path(tempfile.mkdtemp(prefix="todo-rootfs-"))
        try:
            subprocess.run(
                [*DEBOOTSTRAP, str(rootfs), DEBIAN_MIRROR],
                check=True,
                capture_output=True,
                timeout=900,
            )
            tar = subprocess.run(
                ["tar", "-C", str(rootfs), "-c", "."], check=True, capture_output=True
            )
            self.docker("import", "-", DEBIAN_IMAGE, input=tar.stdout, timeout=300)
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)

    def _make_python(self) -> None:
        with tempfile.TemporaryDirectory(prefix="todo-python-") as context:
            certificates = Path(context) / "ca-certificates"
            certificates.mkdir()
            for certificate in HOST_CA_FOLDER.glob("*.crt"):
                shutil.copy(certificate, certificates)
            (Path(context) / "Dockerfile").write_text(PYTHON_STAND_IN)
            self.docker("build", "--network=host", "-t", PYTHON_IMAGE, context, timeout=900)

    def _make_uv(self) -> None:
        with tempfile.TemporaryDirectory(prefix="todo-uv-") as context:
            subprocess.run(
                [shutil.which("python3") or "python3", "-m", "pip", "download", "--quiet",
                 "--no-deps", "--only-binary=:all:", "--platform=musllinux_1_1_x86_64",
                 f"--dest={context}", f"uv=={UV_VERSION}"],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            (wheel,) = Path(context).glob("uv-*.whl")
            with zipfile.ZipFile(wheel) as archive:
                (Path(context) / "uv").write_bytes(archive.read(f"uv-{UV_VERSION}.data/scripts/uv"))
            (Path(context) / "uv").chmod(0o755)
            (Path(context) / "Dockerfile").write_text("FROM scratch\nCOPY uv /uv\n")
            self.docker("build", "-t", UV_IMAGE, context, timeout=300)

    # ---- the project's images ----------------------------------------------------------------

    def build_images(self, base_images: dict[str, str]) -> str:
        """`make image` with this engine's CLI: the three targets of the real Dockerfile, tagged
        `test`, with only the base images swapped (and the host network: there is no bridge)."""
        arguments = ["--network=host"]
        arguments += [f"--build-arg={name}={value}" for name, value in base_images.items()]
        built = subprocess.run(
            ["make", "--no-print-directory", "image", f"DOCKER={self.cli}", "TAG=test",
             f"IMAGE_BUILD_ARGS={' '.join(arguments)}"],
            cwd=ROOT, capture_output=True, text=True, timeout=1800,
            env={**os.environ, "DOCKER_HOST": f"unix://{self.socket}"},
        )  # fmt: skip
        assert built.returncode == 0, built.stdout + built.stderr
        # The data root outlives the clone: drop what this build replaced, keep the cache bounded.
        self.docker("image", "prune", "--force", check=False, timeout=300)
        self.docker("builder", "prune", "--force", "--keep-storage=4GB", check=False, timeout=300)
        return built.stdout
