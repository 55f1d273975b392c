"""The processes a benchmark measures: `todo-api` and the bare Quart ceiling, both on hypercorn
with 2 uvloop workers, plus the Argon2id baseline."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
WORKERS = "2"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str

    def rss_mib(self) -> float:
        """Resident memory of the server and its worker processes."""
        pids = [self.process.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    pids.append(int(entry.name))
        total_kib = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        return total_kib / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _wait(server: Server, path: str) -> Server:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"bench: {server.process.args} exited")
        try:
            if httpx.get(server.url + path, timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: {server.process.args} did not come up")


def start_api(env: dict[str, str], log: Path) -> Server:
    """`todo-api` with its log (stderr: the access lines too) going to the file `log`."""
    port = _free_port()
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [str(BIN / "todo-api"), "--bind", f"127.0.0.1:{port}", "--workers", WORKERS],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return _wait(Server(process, f"http://127.0.0.1:{port}"), "/readyz")


def start_ceiling() -> Server:
    port = _free_port()
    process = subprocess.Popen(
        [
            str(BIN / "hypercorn"),
            "--workers",
            WORKERS,
            "--worker-class",
            "uvloop",
            "--bind",
            f"127.0.0.1:{port}",
            "bench.ceiling:app",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return _wait(Server(process, f"http://127.0.0.1:{port}"), "/")


def _verify_many(count: int) -> int:
    from todo_common.security import hash_password, verify_password

    stored = hash_password("a password")
    for _ in range(count):
        verify_password(stored, "a password")
    return count


def argon2_verifications_per_second(seconds_each: int = 20) -> float:
    """How many Argon2id verifications 2 processes do per second: what HTTP Basic would cost
    per request if every request verified the password."""
    started = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        done = sum(pool.map(_verify_many, [seconds_each, seconds_each]))
    return done / (time.perf_counter() - started)
