"""Login timing: an unknown user name and a wrong password must take the same time, so the token
route cannot tell an attacker which names exist. Reported by `make bench` as two medians."""

from __future__ import annotations

import statistics
import time
import uuid

import httpx

TOKEN_ROUTE = "/auth/request-token"


def login_medians(url: str, known_user: str, rounds: int = 60) -> tuple[float, float]:
    """Median milliseconds of a refused login: (unknown user, known user with a wrong password).

    The two kinds alternate, so drift in the machine's load affects both alike.
    """
    unknown: list[float] = []
    wrong: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for round_ in range(rounds + 5):
            for name, samples in ((f"nobody-{uuid.uuid4().hex[:8]}", unknown), (known_user, wrong)):
                started = time.perf_counter()
                response = http.get(TOKEN_ROUTE, auth=(name, f"wrong-{round_}"))
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 401:
                    raise SystemExit(f"bench: a wrong login got {response.status_code}, not 401")
                if round_ >= 5:  # the first rounds warm both paths
                    samples.append(elapsed)
    return statistics.median(unknown), statistics.median(wrong)
