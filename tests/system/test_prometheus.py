"""The metrics as an operator sees them: a real Prometheus scrapes a real api, worker and scheduler
every second while clients create, read, miss and overrun their rate limit, and its HTTP API
answers the questions the README's Operating section and the chart's dashboard ask: request rate
by route and status, latency percentiles, task successes, beat ticks, Redis fail-open counts and
`up` for each job. Every PromQL query of every dashboard panel must return data here. The chart's
alert rules load into this Prometheus and evaluate without error on these series."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.chart import CHART, of_kind, render
from tests.support import local_http
from tests.support.databases import DatabaseFactory
from tests.support.servers import free_port, need_program, wait_until
from tests.support.stack import Stack, new_todo, running_stack
from todo_common.celery_app import FLUSH_HIT_COUNTS

pytestmark = pytest.mark.timeout(120)

TODOS = "/api/v1.0/todos/"
RATE_LIMIT = 5  # per 15 s and per user: the second client overruns it by one
DASHBOARD = CHART / "files" / "dashboard.json"
# What each round of traffic answers on the /api routes, by status (see `drive`).
ROUND = {"201": 1, "200": 3 + RATE_LIMIT, "404": 1, "429": 1}


class Prometheus:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = local_http.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        assert body["status"] == "success", f"{promql}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def values(self, promql: str, *by: str) -> dict[tuple[str, ...], float]:
        """The instant vector `promql` as {(label values of `by`...): value}."""
        return {
            tuple(series["metric"].get(label, "") for label in by): float(series["value"][1])
            for series in self.query(promql)
        }

    def total(self, promql: str) -> float:
        return sum(self.values(promql).values())


def start_prometheus(folder: Path, targets: dict[str, str], rules: Path) -> Prometheus:
    binary = need_program("prometheus", shutil.which("prometheus"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = folder / "prometheus.log"
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    prometheus = Prometheus(process, f"http://127.0.0.1:{port}", log)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{log.read_text()}")
        try:
            return local_http.get(f"{prometheus.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_until(ready, 30), log.read_text()
    return prometheus


def chart_rules(folder: Path) -> Path:
    """The chart's alert rules as rendered with its defaults, as a Prometheus rules file."""
    (rule,) = of_kind(render(sets=("prometheusRule.enabled=true",)), "PrometheusRule")
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def drive(stack: Stack) -> None:
    """One round: a user creates a todo, reads it twice and the list, misses one (404); another
    overruns the rate limit (429); a probe reads /readyz."""
    with stack.user_client() as http:
        url = new_todo(http)
        assert [http.get(url).status_code for _ in range(2)] == [200, 200]
        assert http.get(TODOS).status_code == 200
        assert http.get(f"{TODOS}999999").status_code == 404
    with stack.user_client() as greedy:
        statuses = [greedy.get(TODOS).status_code for _ in range(RATE_LIMIT + 1)]
        assert statuses == [200] * RATE_LIMIT + [429]
    assert local_http.get(f"{stack.api.url}/readyz", timeout=5).status_code == 200


@pytest.fixture(scope="module")
def scraped(
    postgres: str,
    databases: DatabaseFactory,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, Prometheus]]:
    """A stack scraped by Prometheus after two rounds of traffic, each seen by a scrape (a
    counter's first sample is its baseline: rate() counts only what the next ones add)."""
    folder = tmp_path_factory.mktemp("prometheus")
    settings = {
        "TODO_USE_RATE_LIMITS": "true",
        "TODO_RATE_LIMIT": f"{RATE_LIMIT}/15s",
        "TODO_FLUSH_INTERVAL": "1",
    }
    with running_stack(databases.create("postgres"), redis_url, folder, **settings) as stack:
        worker, scheduler = stack.worker(), stack.scheduler()
        prometheus = start_prometheus(
            folder,
            {
                "api": stack.api.url.removeprefix("http://"),
                "worker": f"127.0.0.1:{worker.metrics_port}",
                "scheduler": f"127.0.0.1:{scheduler.metrics_port}",
            },
            chart_rules(folder),
        )
        try:
            for round_ in (1, 2):
                drive(stack)
                seen = f'sum(todo_http_requests_total{{job="api", status="429"}}) >= {round_}'
                assert wait_until(lambda q=seen: prometheus.query(q), 20), (
                    prometheus.log.read_text()
                )
            # Both rounds' 4 views reach the database through flushes the beat sends every second.
            assert wait_until(lambda: stack.hits_in_database() == 4, 20), worker.log()
            # rate() over a counter needs samples a few seconds apart: three scrapes of each job.
            scraped_thrice = "min(count_over_time(up[1m])) >= 3"
            assert wait_until(lambda: prometheus.query(scraped_thrice), 20), (
                prometheus.log.read_text()
            )
            yield stack, prometheus
        finally:
            prometheus.process.terminate()
            prometheus.process.wait(30)


def test_every_job_is_up(scraped: tuple[Stack, Prometheus]) -> None:
    _, prometheus = scraped
    assert prometheus.values("up", "job") == {("api",): 1, ("worker",): 1, ("scheduler",): 1}


def test_requests_by_route_and_status(scraped: tuple[Stack, Prometheus]) -> None:
    _, prometheus = scraped
    totals = prometheus.values(
        'sum by (status) (todo_http_requests_total{job="api", route=~"/api/.*"})', "status"
    )
    assert totals == {(status,): 2.0 * count for status, count in ROUND.items()}
    rates = prometheus.values(
        'sum by (route, status) (rate(todo_http_requests_total{job="api"}[1m]))', "route", "status"
    )
    for route, status in [
        (TODOS, "201"),
        (TODOS, "200"),
        (TODOS, "429"),
        ("/api/v1.0/todos/<todo_id>", "200"),
        ("/api/v1.0/todos/<todo_id>", "404"),
        ("/readyz", "200"),
    ]:
        assert rates.get((route, status), 0) > 0, (route, status, rates)


def test_latency_percentiles_from_the_histogram(scraped: tuple[Stack, Prometheus]) -> None:
    _, prometheus = scraped
    bucket = 'rate(todo_http_request_duration_seconds_bucket{job="api"}[1m])'
    p50 = prometheus.total(f"histogram_quantile(0.5, sum by (le) ({bucket}))")
    p99 = prometheus.total(f"histogram_quantile(0.99, sum by (le) ({bucket}))")
    assert 0 < p50 <= p99 < 10


def test_tasks_beat_and_redis_fail_open_counts(scraped: tuple[Stack, Prometheus]) -> None:
    _, prometheus = scraped
    flushes = f'celery_task_succeeded_total{{job="worker", name="{FLUSH_HIT_COUNTS}"}}'
    assert prometheus.total(flushes) >= 2
    assert prometheus.total(f'celery_task_failed_total{{name="{FLUSH_HIT_COUNTS}"}}') == 0
    assert prometheus.total('rate(todo_beat_ticks_total{job="scheduler"}[1m])') > 0
    sent = f'todo_beat_sent_total{{job="scheduler", task="{FLUSH_HIT_COUNTS}"}}'
    assert prometheus.total(sent) >= 2
    # Redis was up throughout: the counter is there for each feature, at 0.
    failures = prometheus.values('todo_redis_failures_total{job="api"}', "feature")
    assert failures == {("rate_limit",): 0, ("hits",): 0}


def test_the_chart_alert_rules_evaluate_without_error(scraped: tuple[Stack, Prometheus]) -> None:
    _, prometheus = scraped

    def evaluated() -> list[dict[str, Any]]:
        groups = local_http.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"][
            "groups"
        ]
        rules: list[dict[str, Any]] = [rule for group in groups for rule in group["rules"]]
        return (
            rules
            if rules and all(rule.get("lastEvaluation", "0").startswith("2") for rule in rules)
            else []
        )

    assert wait_until(evaluated, 10)
    rules = evaluated()
    assert len(rules) == 9
    assert [(r["name"], r["lastError"]) for r in rules if r["health"] != "ok"] == []
    assert [r["name"] for r in rules if r["state"] == "firing"] == []


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.mark.parametrize(("title", "expr"), dashboard_queries(), ids=lambda v: str(v)[:40])
def test_each_dashboard_query_returns_data(
    scraped: tuple[Stack, Prometheus], title: str, expr: str
) -> None:
    _, prometheus = scraped
    # Grafana's $__rate_interval is at least four scrape intervals; a minute holds the test.
    result = prometheus.query(expr.replace("$__rate_interval", "1m"))
    values = [float(series["value"][1]) for series in result]
    assert values, f"{title}: no data for {expr}"
    assert any(not math.isnan(value) for value in values), f"{title}: only NaN for {expr}"
