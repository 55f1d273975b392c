"""Custom resources' own schemas, to validate the chart's HTTPRoute and PrometheusRule without a
cluster.

kubernetes-validate knows only the built-in kinds. The CRDs are not on PyPI, but npm packages made
by @kubernetes-models/crd-generate hold them: their module for each kind holds the CRD version's
`openAPIV3Schema` as a JSON literal, with `nullable` added to optional fields and the CEL rules
(`x-kubernetes-validations`) left out. @kubernetes-models/gateway-api 0.5.1 was generated from the
Gateway API v1.0.0 release manifests (standard-install.yaml and experimental-install.yaml);
@kubernetes-models/prometheus-operator 1.6.3 from the Prometheus operator's CRDs (its later
versions ship compiled validators, not the schema). We fetch each exact tarball with npm, check its
sha512 against the pin below, and keep the kind's schema as JSON in .tools (git-ignored).

`make tools` runs this file (`python3 tests/deploy/gateway_api.py`); the tests call
`httproute_schema()` and `prometheusrule_schema()`, which fetch on first use too. It needs only the
standard library, so the Makefile can run it before the venv exists.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
Schema = dict[str, Any]


@dataclass(frozen=True)
class PinnedSchema:
    """One kind's schema in one exact, hash-checked version of a crd-generate npm package."""

    package: str
    version: str
    integrity: str  # the registry's dist.integrity of that version: npm checks it, we check again
    module: str  # the package's module for the kind, holding the schema as a JSON literal
    folder: str  # under .tools (git-ignored)
    name: str  # of the kind's schema there

    @property
    def path(self) -> Path:
        return ROOT / ".tools" / self.folder / f"{self.name}-{self.version}.json"

    def check_integrity(self, tarball: bytes) -> None:
        algorithm, _, expected = self.integrity.partition("-")
        actual = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
        if actual != expected:
            raise RuntimeError(
                f"{self.package}@{self.version}: {algorithm} is {actual}, the pin is {expected}"
            )

    def fetch(self) -> Path:
        """Download the pinned package with npm, check it, and write the schema as JSON."""
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed (Debian: apt-get install npm)")
        with tempfile.TemporaryDirectory() as scratch:
            subprocess.run(
                [
                    npm,
                    "pack",
                    "--silent",
                    "--pack-destination",
                    scratch,
                    f"{self.package}@{self.version}",
                ],
                check=True,
                cwd=scratch,
                stdout=subprocess.DEVNULL,
                timeout=300,
            )
            (tgz,) = Path(scratch).glob("*.tgz")
            tarball = tgz.read_bytes()
        self.check_integrity(tarball)
        with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
            member = archive.extractfile(self.module)
            assert member is not None, self.module
            schema = _schema_literal(member.read().decode())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(schema, indent=1) + "\n")
        partial.replace(self.path)  # never leave a half-written schema behind
        return self.path

    def load(self) -> Schema:
        """The schema, fetched on first use. Where it cannot be had the test fails under
        CI=true and is skipped, with the reason, elsewhere."""
        if not self.path.exists():
            try:
                self.fetch()
            except (OSError, RuntimeError, subprocess.SubprocessError) as error:
                import pytest

                message = f"the {self.name} schema could not be fetched: {error}"
                if os.environ.get("CI", "").lower() == "true":
                    pytest.fail(message)
                pytest.skip(message)
        schema: Schema = json.loads(self.path.read_text())
        return schema


# Generated from the Gateway API v1.0.0 CRDs.
HTTPROUTE = PinnedSchema(
    package="@kubernetes-models/gateway-api",
    version="0.5.1",
    integrity="sha512-"
    "VsB6ipjcLCvOPmAbqxiK9dEEwD/yYGs5lkBTRFG2EcVGFy4o+JMWrTHuAXvaLtycGG67/qWJhHW8MtUhKJLdBg==",
    module="package/gateway.networking.k8s.io/v1/HTTPRoute.js",
    folder="gateway-api",
    name="httproute-v1",
)
# The newest version that still ships JSON literals (later ones ship compiled validators only).
PROMETHEUSRULE = PinnedSchema(
    package="@kubernetes-models/prometheus-operator",
    version="1.6.3",
    integrity="sha512-"
    "K5OTYnqWB40puLsntlQjvMz5viH0NNorPBjnB8CRdq1k/u7aIXOH+yk5wzxX0FZQeo2qy3cETVUjjYkEF8IOcQ==",
    module="package/monitoring.coreos.com/v1/PrometheusRule.js",
    folder="prometheus-operator",
    name="prometheusrule-v1",
)
PINNED = (HTTPROUTE, PROMETHEUSRULE)


def _check_integrity(tarball: bytes) -> None:
    HTTPROUTE.check_integrity(tarball)


def _schema_literal(module: str) -> Schema:
    """The `const schema = {...};` of a crd-generate module: JSON, as the generator prints it."""
    start = module.index("const schema = ") + len("const schema = ")
    end = module.index("\n};\n", start) + 2
    schema: Schema = json.loads(module[start:end])
    return schema


def httproute_schema() -> Schema:
    """The HTTPRoute v1 openAPIV3Schema."""
    return HTTPROUTE.load()


def prometheusrule_schema() -> Schema:
    """The PrometheusRule v1 schema."""
    return PROMETHEUSRULE.load()


def strict(schema: Any) -> Any:
    """The schema refusing unknown fields, as the API server does under kubectl's default
    `--validate=strict` (a CRD schema alone would let the server prune them silently)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tightened = {key: strict(value) for key, value in schema.items()}
    if "properties" in tightened and "additionalProperties" not in tightened:
        tightened["additionalProperties"] = False
    return tightened


if __name__ == "__main__":
    for pinned in PINNED:
        where = pinned.path.relative_to(ROOT)
        if pinned.path.exists() and "--force" not in sys.argv:
            print(f"{where} is there")
        else:
            pinned.fetch()
            print(f"fetched {where} from {pinned.package}@{pinned.version}")
