"""KEDA's own ScaledObject validator, to check the chart's ScaledObject without a cluster.

KEDA's CRDs are on neither PyPI nor Debian. The npm package @kubernetes-models/keda 2.0.0 holds
validators generated from KEDA's v2 API types (the CRD's openAPIV3Schema, compiled by ajv): npm
installs that exact version (checking the registry's sha512, which we pin again below) into
.tools/keda, and `validate()` runs the ScaledObject model's `validate()` in node on a rendered
object. It checks types, enums and required fields; unknown fields pass, as in the package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / ".tools" / "keda"
PACKAGE, VERSION = "@kubernetes-models/keda", "2.0.0"
INTEGRITY = (
    "sha512-"
    "iqDohrzL51UXD6zM+Rl4RDnZ9Q7jwgikXYrDCxL0sWA5ZTFa7nMfS4Exu2uK6ohA+OUNQMUIFWORAHNpz5qlFw=="
)
VALIDATOR = """\
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
try {
  new ScaledObject(JSON.parse(Buffer.concat(chunks).toString())).validate();
} catch (error) {
  console.log(JSON.stringify(error.errors ?? String(error)));
  process.exit(1);
}
"""


def _unavailable(reason: str) -> None:
    message = f"KEDA's ScaledObject validator could not be installed: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _install() -> Path:
    script = FOLDER / "validate.mjs"
    if script.exists():
        return script
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        _unavailable("npm and node are not installed (Debian: apt-get install npm)")
    assert npm is not None
    FOLDER.mkdir(parents=True, exist_ok=True)
    installed = subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(FOLDER),
         f"{PACKAGE}@{VERSION}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if installed.returncode != 0:
        _unavailable(installed.stderr.strip()[-500:])
    lock = json.loads((FOLDER / "node_modules" / ".package-lock.json").read_text())
    entry = lock["packages"][f"node_modules/{PACKAGE}"]
    assert (entry["version"], entry["integrity"]) == (VERSION, INTEGRITY), entry
    script.write_text(VALIDATOR)
    return script


def validate(scaled_object: dict[str, Any]) -> list[dict[str, Any]]:
    """KEDA's complaints about `scaled_object` (empty: valid)."""
    script = _install()
    result = subprocess.run(
        ["node", str(script)], input=json.dumps(scaled_object), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    if result.returncode == 0:
        return []
    errors: list[dict[str, Any]] = json.loads(result.stdout)
    return errors
