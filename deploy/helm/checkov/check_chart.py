"""`make lint`'s checkov step: render the chart with the values we ship, run checkov's Kubernetes
checks on the manifests, and fail on every finding that skips.yaml does not explain, and on every
skip that explains nothing any more (so the file cannot rot into a blanket pass).

    python check_chart.py --helm HELM --checkov CHECKOV [--chart DIR] [--skips FILE]

Run it with the checkov venv's Python (it needs PyYAML, which checkov brings).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "todo"
RELEASE = NAMESPACE = "todo"  # skips.yaml names resources as Kind.todo.todo-...
# What `make lint` checks: the defaults (the kind loop) and a production install.
RENDERS = {"default": (), "production": ("ci/production-values.yaml",)}


@dataclass(frozen=True)
class Finding:
    render: str
    check: str
    resource: str
    name: str

    def __str__(self) -> str:
        return f"{self.render}: {self.check} {self.resource} ({self.name})"


@dataclass(frozen=True)
class Skip:
    check: str
    reason: str
    renders: frozenset[str] | None  # None: every render
    resources: frozenset[str] | None  # None: every resource

    def explains(self, finding: Finding) -> bool:
        return (
            finding.check == self.check
            and (self.renders is None or finding.render in self.renders)
            and (self.resources is None or finding.resource in self.resources)
        )


def load_skips(path: Path) -> list[Skip]:
    """The entries of skips.yaml; each needs a check id and a one-line reason."""
    skips = []
    for number, entry in enumerate(yaml.safe_load(path.read_text()) or [], start=1):
        unknown = set(entry) - {"check", "reason", "renders", "resources"}
        reason = str(entry.get("reason") or "").strip()
        if not entry.get("check") or not reason or "\n" in reason or unknown:
            raise SystemExit(
                f"{path}: entry {number} needs `check` and a one-line `reason`"
                + (f" (unknown keys: {', '.join(sorted(unknown))})" if unknown else "")
            )
        skips.append(
            Skip(
                check=entry["check"],
                reason=reason,
                renders=frozenset(entry["renders"]) if "renders" in entry else None,
                resources=frozenset(entry["resources"]) if "resources" in entry else None,
            )
        )
    return skips


def render(helm: str, chart: Path, folder: Path) -> None:
    """One manifest file per render, named after it (checkov reports the file)."""
    for name, values in RENDERS.items():
        args = [helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE]
        for path in values:
            args += ["--values", str(chart / path)]
        # The programs and paths come from the Makefile and this file, not from outside input.
        manifests = subprocess.run(args, check=True, capture_output=True, text=True).stdout  # noqa: S603
        (folder / f"{name}.yaml").write_text(manifests)


def run_checkov(checkov: str, folder: Path) -> list[Finding]:
    # --skip-download: no calls to Prisma Cloud for guidelines (the checks are all local).
    command = [checkov, "--framework", "kubernetes", "--directory", str(folder)]
    command += ["--output", "json", "--quiet", "--compact", "--skip-download"]
    result = subprocess.run(command, capture_output=True, text=True)  # noqa: S603
    if result.returncode not in (0, 1):  # 1: findings
        raise SystemExit(f"checkov failed ({result.returncode}):\n{result.stderr}")
    reports: Any = json.loads(result.stdout or "[]")
    if isinstance(reports, dict):  # one report when one framework ran
        reports = [reports]
    findings = []
    for report in reports:
        if report.get("summary", {}).get("parsing_errors"):
            raise SystemExit(f"checkov could not parse the manifests: {report['summary']}")
        for failed in report.get("results", {}).get("failed_checks", []):
            findings.append(
                Finding(
                    render=Path(failed["file_path"]).stem,
                    check=failed["check_id"],
                    resource=failed["resource"],
                    name=failed["check_name"],
                )
            )
    return findings


def unexplained(findings: list[Finding], skips: list[Skip]) -> tuple[list[Finding], list[Skip]]:
    """The findings no skip explains, and the skips that explain no finding."""
    open_findings = [f for f in findings if not any(skip.explains(f) for skip in skips)]
    stale = [skip for skip in skips if not any(skip.explains(f) for f in findings)]
    return open_findings, stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--helm", required=True)
    parser.add_argument("--checkov", required=True)
    parser.add_argument("--chart", type=Path, default=CHART)
    parser.add_argument("--skips", type=Path, default=HERE / "skips.yaml")
    args = parser.parse_args()

    skips = load_skips(args.skips)
    with tempfile.TemporaryDirectory() as folder:
        render(args.helm, args.chart, Path(folder))
        findings = run_checkov(args.checkov, Path(folder))
    open_findings, stale = unexplained(findings, skips)
    for finding in sorted(open_findings, key=str):
        print(f"checkov: {finding}", file=sys.stderr)
    for skip in stale:
        print(f"checkov: {args.skips.name} explains nothing now: {skip.check}", file=sys.stderr)
    explained = len(findings) - len(open_findings)
    print(
        f"checkov: {len(findings)} findings on {', '.join(RENDERS)}: {explained} explained in "
        f"{args.skips.name}, {len(open_findings)} not; {len(stale)} stale skips"
    )
    return 1 if open_findings or stale else 0


if __name__ == "__main__":
    sys.exit(main())
