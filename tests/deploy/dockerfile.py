"""Read deploy/docker/Dockerfile and replay a build stage's COPY and `uv sync` steps locally, so
tests check the venv each image would hold without a Docker engine."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"


@dataclass
class Stage:
    name: str
    base: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # (instruction, arguments)


def parse_stages(text: str | None = None) -> dict[str, Stage]:
    text = text if text is not None else DOCKERFILE.read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", arguments, re.IGNORECASE)
            assert match, line
            current = Stage(match.group(2) or match.group(1), match.group(1))
            stages[current.name] = current
        elif current is not None:
            current.steps.append((instruction, arguments.strip()))
    return stages


def stage_chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    chain = []
    while name in stages:
        chain.insert(0, stages[name])
        name = stages[name].base
    return chain


def replay_build(stage: str, folder: Path) -> Path:
    """Run `stage`'s (and its parents') COPY and `uv sync` steps in `folder`; returns the venv."""
    source, venv = folder / "src", folder / "venv"
    source.mkdir(parents=True)
    env = {**os.environ}
    for build_stage in stage_chain(parse_stages(), stage):
        for instruction, arguments in build_stage.steps:
            if instruction == "ENV":
                for name, value in re.findall(r"(\w+)=(\S+)", arguments):
                    env[name] = value
            elif instruction == "COPY" and not arguments.startswith("--from"):
                *sources, target = shlex.split(arguments)
                for item in sources:
                    destination = source / target
                    if (ROOT / item).is_dir():
                        shutil.copytree(
                            ROOT / item,
                            destination,
                            dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                        )
                    else:
                        if target.endswith("/"):
                            destination.mkdir(parents=True, exist_ok=True)
                            destination = destination / Path(item).name
                        shutil.copy2(ROOT / item, destination)
            elif instruction == "RUN" and "uv sync" in arguments:
                command = shlex.split(arguments[arguments.index("uv sync") :])
                env["UV_PROJECT_ENVIRONMENT"] = str(venv)
                subprocess.run(command, cwd=source, env=env, check=True, capture_output=True)
    return venv
