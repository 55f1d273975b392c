"""The chart's alerts and dashboard as rendered: promtool accepts the rules and its unit tests
(tests/deploy/alerts_test.yaml) fire and clear each alert, the PrometheusRule validates against
the Prometheus operator's CRD schema, and the dashboard ConfigMap carries Grafana's sidecar
label."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import yaml

from tests.deploy import gateway_api
from tests.deploy.chart import PRODUCTION_VALUES, Manifest, of_kind, render
from tests.support.servers import need_program

HERE = Path(__file__).resolve().parent
UNIT_TESTS = HERE / "alerts_test.yaml"
MONITORING = ("prometheusRule.enabled=true", "grafanaDashboard.enabled=true")


def prometheus_rule(*sets: str) -> Manifest:
    (rule,) = of_kind(render(sets=(*MONITORING, *sets)), "PrometheusRule")
    return rule


def write_rules(rule: Manifest, folder: Path) -> Path:
    """The rule groups of a rendered PrometheusRule as a Prometheus rules file."""
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = need_program("promtool", shutil.which("promtool"))
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def test_rendered_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = write_rules(prometheus_rule(), tmp_path)
    result = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_each_alert_fires_and_clears_in_promtool_unit_tests(tmp_path: Path) -> None:
    rule = prometheus_rule()
    write_rules(rule, tmp_path)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every alert the chart defines has a unit test of its own.
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    tested = {
        check["alertname"]
        for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for check in test["alert_rule_test"]
    }
    assert alerts == tested


def test_thresholds_come_from_values(tmp_path: Path) -> None:
    rule = prometheus_rule(
        "prometheusRule.latencyP99Seconds=2", "config.flushInterval=30", "prometheusRule.labels.a=b"
    )
    exprs = {r["alert"]: r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert exprs["TodoApiHighLatency"].rstrip().endswith("> 2")
    assert exprs["TodoBeatStalled"].rstrip().endswith("> 90")  # 3 flush intervals
    assert rule["metadata"]["labels"]["a"] == "b"
    # With other thresholds the unit tests' timings no longer hold: promtool says so.
    write_rules(rule, tmp_path)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    assert promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path).returncode != 0


def test_the_prometheus_rule_validates_against_the_operator_crd() -> None:
    schema = gateway_api.strict(gateway_api.prometheusrule_schema())
    for values in ((), (PRODUCTION_VALUES,)):
        rendered = of_kind(render(*values, sets=MONITORING), "PrometheusRule")
        (rule,) = rendered
        assert rule["apiVersion"] in schema["properties"]["apiVersion"]["enum"]
        assert rule["kind"] in schema["properties"]["kind"]["enum"]
        jsonschema.validate(rule["spec"], schema["properties"]["spec"])
    broken = {"groups": [{"name": "todo", "rules": [{"alert": "X", "expr": "up", "fore": "5m"}]}]}
    try:
        jsonschema.validate(broken, schema["properties"]["spec"])
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the schema let a misspelt rule field through")


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {manifest["kind"] for manifest in render()}
    assert "PrometheusRule" not in kinds
    assert not [
        m for m in of_kind(render(), "ConfigMap") if m["metadata"]["name"].endswith("-dashboard")
    ]


def test_the_dashboard_configmap_carries_the_sidecar_label_and_the_dashboard() -> None:
    manifests = render(
        sets=(*MONITORING, "grafanaDashboard.label=dashboards", "grafanaDashboard.labelValue=todo")
    )
    (config_map,) = [
        m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"].endswith("-dashboard")
    ]
    assert config_map["metadata"]["labels"]["dashboards"] == "todo"
    dashboard = json.loads(config_map["data"]["todo.json"])
    shipped = json.loads((HERE.parents[1] / "deploy/helm/todo/files/dashboard.json").read_text())
    assert dashboard == shipped
    assert dashboard["uid"] == "todo-overview"
