"""The checkov step of `make lint` (deploy/helm/checkov): every kept finding has a one-line reason,
and a skip explains only the findings it names, so the rest still fail the lint."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.chart import ROOT

FOLDER = ROOT / "deploy" / "helm" / "checkov"


def load_check_chart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_chart", FOLDER / "check_chart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


check_chart = load_check_chart()


def finding(render: str, check: str, resource: str) -> object:
    return check_chart.Finding(render=render, check=check, resource=resource, name="a check")


def test_every_committed_skip_has_a_one_line_reason() -> None:
    skips = check_chart.load_skips(FOLDER / "skips.yaml")
    assert skips
    for skip in skips:
        assert skip.check.startswith("CKV_K8S_") and len(skip.reason) > 20


def test_a_skip_explains_only_its_renders_and_resources(tmp_path: Path) -> None:
    skips_file = tmp_path / "skips.yaml"
    skips_file.write_text(
        "- check: CKV_K8S_8\n"
        "  resources: [Pod.todo.todo-test-readyz]\n"
        "  reason: a one-shot test pod\n"
        "- check: CKV_K8S_43\n"
        "  renders: [default]\n"
        "  reason: dev images have no digest\n"
        "- check: CKV_K8S_99\n"
        "  reason: matches nothing\n"
    )
    skips = check_chart.load_skips(skips_file)
    explained = [
        finding("default", "CKV_K8S_8", "Pod.todo.todo-test-readyz"),
        finding("production", "CKV_K8S_8", "Pod.todo.todo-test-readyz"),
        finding("default", "CKV_K8S_43", "Deployment.todo.todo-api"),
    ]
    not_explained = [
        finding("default", "CKV_K8S_8", "Deployment.todo.todo-api"),  # another resource
        finding("production", "CKV_K8S_43", "Deployment.todo.todo-api"),  # another render
        finding("default", "CKV_K8S_35", "Deployment.todo.todo-api"),  # no skip at all
    ]
    open_findings, stale = check_chart.unexplained(explained + not_explained, skips)
    assert open_findings == not_explained
    assert [skip.check for skip in stale] == ["CKV_K8S_99"]


@pytest.mark.parametrize(
    "entry",
    [
        "- check: CKV_K8S_8\n",  # no reason
        "- check: CKV_K8S_8\n  reason: ''\n",
        "- check: CKV_K8S_8\n  reason: |\n    two\n    lines\n",
        "- reason: no check\n",
        "- check: CKV_K8S_8\n  reason: fine\n  resource: [a typo]\n",
    ],
)
def test_a_skip_without_a_one_line_reason_is_refused(tmp_path: Path, entry: str) -> None:
    skips_file = tmp_path / "skips.yaml"
    skips_file.write_text(entry)
    with pytest.raises(SystemExit, match="one-line `reason`"):
        check_chart.load_skips(skips_file)
