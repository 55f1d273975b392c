"""Run wrk and read its summary: requests/s, latency percentiles and every kind of error."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

THREADS = 2
CONNECTIONS = 32


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors plus responses that are not 2xx or 3xx


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, script: str, env: dict[str, str], seconds: int) -> Result:
    output = subprocess.run(
        [
            "wrk",
            f"-t{THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script,
            url,
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.M))
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    bad_status = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = (sum(map(int, socket.groups())) if socket else 0) + (
        int(bad_status.group(1)) if bad_status else 0
    )
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rps is None or set(percentiles) != {"50", "99"}:
        raise SystemExit(f"bench: cannot read wrk's output:\n{output}")
    return Result(float(rps.group(1)), _ms(percentiles["50"]), _ms(percentiles["99"]), errors)
