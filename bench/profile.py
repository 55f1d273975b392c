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
    """`function (path/to/file.py:12)` -> the top-level package (or module) of that file."""
    path = frame.rsplit("(", 1)[-1].split(":", 1)[0]
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/src/" in path:
        return path.split("/src/", 1)[1].split("/", 1)[0]
    if "/lib/python" in path or path.startswith("<"):
        return "python stdlib"
    return path


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
        worker = next(
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit()
            and (entry / "stat").exists()
            and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == api.process.pid
        )
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
                ours[frame.split(" (", 1)[0] + " " + frame.rsplit("/", 1)[-1]] += samples
                break
    print(f"self time by package ({total} samples of one worker):")
    for package, samples in packages.most_common(15):
        print(f"  {package:<28} {100 * samples / total:5.1f}%")
    print("innermost frame of our own code on the stack:")
    for frame, samples in ours.most_common(12):
        print(f"  {frame:<60} {100 * samples / total:5.1f}%")


if __name__ == "__main__":
    main()
