"""`make profile`: where one API worker's CPU goes while wrk drives token `GET item`, by package.

Starts `todo-api` as `make bench` does (2 workers, PostgreSQL, Redis, token auth, rate limits, hit
counting, metrics, access log at info), seeds one user with a few todos, runs wrk for
PROFILE_SECONDS (20) and samples one worker with py-spy meanwhile. Prints self time per package
(the file a sampled stack's innermost frame is in) and the innermost frames of our own code.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from bench.run import POSTGRES, REDIS, SECRET, seed
from bench.servers import start_api
from bench.wrk import run_wrk
from todo_common.security import issue_token

HERE = Path(__file__).resolve().parent
SECONDS = int(os.environ.get("PROFILE_SECONDS", "20"))
PY_SPY = os.environ.get("PY_SPY", "py-spy")


def package_of(frame: str) -> str:
    """`function (package/module.py:12)`, as py-spy names a frame -> its top-level package."""
    path = frame.rsplit(" (", 1)[-1].split(":", 1)[0]
    return path.split("/", 1)[0].removesuffix(".py") or "(native)"


def _children(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(entry.name))
    return children


def _is_worker(pid: int) -> bool:
    """A serving process, not multiprocessing's resource tracker."""
    return b"--multiprocessing-fork" in Path(f"/proc/{pid}/cmdline").read_bytes()


def main() -> None:
    if shutil.which(PY_SPY) is None:
        raise SystemExit("profile: py-spy is needed (make profile installs it)")
    database = f"todo_profile_{uuid.uuid4().hex[:8]}"
    database_url = POSTGRES.rsplit("/", 1)[0] + f"/{database}"
    subprocess.run(["psql", POSTGRES, "-qc", f'CREATE DATABASE "{database}"'], check=True)
    env = {
        "TODO_DATABASE_URL": database_url.replace("postgresql://", "postgresql+asyncpg://"),
        "TODO_REDIS_URL": REDIS,
        "TODO_REDIS_KEY_PREFIX": f"todo-profile-{uuid.uuid4().hex[:8]}:",
        "TODO_SECRET_KEY": SECRET,
        "TODO_USE_TOKEN_AUTH": "true",
        "TODO_USE_RATE_LIMITS": "true",
        "TODO_RATE_LIMIT": "100000000/1h",
        "TODO_LOG_LEVEL": "info",
        "TODO_LOG_FORMAT": "json",
        "TODO_DB_POOL_SIZE": "16",
    }
    api = None
    try:
        subprocess.run(
            [str(Path(sys.executable).parent / "todoctl"), "migrate"],
            check=True,
            env={**os.environ, **env},
            capture_output=True,
        )
        users = asyncio.run(seed(database_url))
        (HERE / "results").mkdir(exist_ok=True)
        api = start_api(env, HERE / "results" / "api-profile.log")
        token = issue_token(SECRET, users["reader"], 3600)
        item = f"{api.url}/api/v1.0/todos/1"
        headers = {"BENCH_HEADERS": f"Authorization: Bearer {token}"}
        lua = str(HERE / "wrk" / "request.lua")
        run_wrk(item, lua, headers, 3)  # warm
        load = threading.Thread(target=run_wrk, args=(item, lua, headers, SECONDS + 4))
        load.start()
        worker = next(pid for pid in _children(api.process.pid) if _is_worker(pid))
        raw = HERE / "results" / "profile.txt"
        sampling = ["-d", str(SECONDS), "-r", "250", "-f", "raw", "--nonblocking"]
        subprocess.run(
            [PY_SPY, "record", "-p", str(worker), *sampling, "-o", str(raw)],
            check=True,
            capture_output=True,
        )
        load.join()
    finally:
        if api is not None:
            api.stop()
        subprocess.run(
            ["psql", POSTGRES, "-qc", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'],
            check=False,
        )
    report(raw)


def report(raw: Path) -> None:
    packages: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        samples = int(count)
        total += samples
        packages[package_of(frames[-1])] += samples
        for frame in reversed(frames):
            if package_of(frame) in ("todo_api", "todo_common"):
                ours[frame] += samples
                break
    print(f"self time by package ({total} samples of one worker):")
    for package, samples in packages.most_common(15):
        print(f"  {package:<28} {100 * samples / total:5.1f}%")
    print("innermost frame of our own code on the stack (time in it and what it calls):")
    for frame, samples in ours.most_common(15):
        print(f"  {frame:<70} {100 * samples / total:5.1f}%")


if __name__ == "__main__":
    main()
