"""The README's shell examples, run as written against real `todo-api` servers, so the README
cannot drift from the code.

Every ```sh block of README.md is preceded by an HTML comment (invisible on the rendered page)
that says how it is checked:

- `<!-- example: run server=NAME [input=TEXT] [setup="SHELL"] -->`: the block runs in bash from
  the repository root, with `http://127.0.0.1:5000` pointing at a server of that configuration
  (`basic`, `tokens` or `limits`, all on one fresh PostgreSQL database and TODO_DATABASE_URL set
  to it, in README order, so one example builds on the ones before). `setup` runs first, hidden;
  `input` is given twice on the standard input of each command, as a person answers a password
  prompt and its repeat.
- `<!-- example: not run: REASON -->`: what runs it instead, or why nothing can here.

In a block, a line starting with `$ ` is a command and the lines after it are its expected
output; in a block without prompts every line is a command. Each command must exit 0. Expected
output is compared loosely where it must be: `...` stands for anything, white space may differ,
an HTTP date or a 10-digit epoch stands for any, a trailing `  # comment` is the README's, not
the program's. An expected `HTTP/1.1 NNN` response lists headers that must be among the actual
ones. A command whose line ends in `# NNN` (a status) must have been answered NNN.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.databases import DatabaseFactory
from tests.support.servers import ApiServer, clean_env, start_api

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_URL = "http://127.0.0.1:5000"
_ANNOTATION = re.compile(r"<!--\s*example:\s*(.*?)\s*-->")
_FENCE = re.compile(r"^```(\S*)\s*$")
_STATUS_COMMENT = re.compile(r"#\s*(\d{3})\b[^#]*$")
_README_COMMENT = re.compile(r"\s{2,}#.*$")
_HTTP_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
_EPOCH = re.compile(r"\b\d{10}\b")
_MARK = "@@readme-example@@"


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)

    @property
    def status(self) -> int | None:
        match = _STATUS_COMMENT.search(self.text.splitlines()[-1])
        return int(match[1]) if match else None


@dataclass
class Example:
    line: int  # of the opening fence, 1-based
    annotation: str | None
    commands: list[Command]

    def options(self) -> dict[str, str]:
        assert self.annotation is not None
        words = shlex.split(self.annotation.removeprefix("run"))
        return dict(word.split("=", 1) for word in words)


def _commands(lines: list[str]) -> list[Command]:
    prompted = any(line.startswith("$ ") for line in lines)
    commands: list[Command] = []
    continuing = False
    for line in lines:
        if continuing:
            commands[-1].text += "\n" + line
        elif prompted and line.startswith("$ "):
            commands.append(Command(line[2:]))
        elif prompted:
            commands[-1].expected.append(line)
        elif line.strip() and not line.lstrip().startswith("#"):
            commands.append(Command(line))
        else:
            continue
        continuing = line.rstrip().endswith("\\")
    return commands


def readme_examples() -> list[Example]:
    examples: list[Example] = []
    lines = README.read_text().splitlines()
    number = 0
    while number < len(lines):
        fence = _FENCE.match(lines[number])
        if fence is None:
            number += 1
            continue
        end = next(i for i in range(number + 1, len(lines)) if lines[i].startswith("```"))
        if fence[1] == "sh":
            before = next((lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()), "")
            annotation = _ANNOTATION.fullmatch(before.strip())
            examples.append(
                Example(
                    number + 1,
                    annotation[1] if annotation else None,
                    _commands(lines[number + 1 : end]),
                )
            )
        number = end + 1
    return examples


def pattern(expected: str) -> re.Pattern[str]:
    """The README's expected text as a regular expression (see the module docstring)."""
    parts = []
    for token in re.split(r"(\.\.\.|\s+)", expected.strip()):
        if token == "...":
            parts.append(".*?")
        elif token.isspace():
            parts.append(r"\s*")
        elif token:
            escaped = re.escape(token)
            parts.append(escaped)
    regex = "".join(parts)
    # Values that differ on every run: any HTTP date, any epoch second.
    for volatile, stands_for in (
        (_HTTP_DATE, r"\w{3},\s*\d{2}\s*\w{3}\s*\d{4}\s*[\d:]{8}\s*GMT"),
        (_EPOCH, r"\d{10}"),
    ):
        for sample in set(volatile.findall(expected)):
            escaped_sample = "".join(
                r"\s*" if piece.isspace() else re.escape(piece)
                for piece in re.split(r"(\s+)", sample)
            )
            regex = regex.replace(escaped_sample, stands_for)
    return re.compile(regex, re.DOTALL)


def check_output(command: Command, actual: str, url: str) -> None:
    expected = [_README_COMMENT.sub("", line).replace(README_URL, url) for line in command.expected]
    while expected and not expected[-1].strip():
        expected.pop()
    status = command.status
    if status is not None:
        assert re.match(rf"HTTP/[\d.]+ {status}\b", actual), (command.text, actual)
    if not expected:
        return
    if not expected[0].startswith("HTTP/"):
        assert pattern("\n".join(expected)).fullmatch(actual.strip()), (command.text, actual)
        return
    head, _, body = actual.replace("\r\n", "\n").partition("\n\n")
    status_line, *header_lines = head.splitlines()
    code = expected[0].split()[1]
    assert re.match(rf"HTTP/[\d.]+ {code}\b", status_line), (command.text, actual)
    headers = [line.partition(":") for line in header_lines]
    separator = expected.index("") if "" in expected else len(expected)
    for line in expected[1:separator]:
        name, _, value = line.partition(":")
        values = [v.strip() for n, _, v in headers if n.strip().lower() == name.strip().lower()]
        assert any(pattern(value).fullmatch(v) for v in values), (command.text, line, head)
    expected_body = "\n".join(expected[separator + 1 :])
    if expected_body.strip():
        assert pattern(expected_body).fullmatch(body.strip()), (command.text, body)


def run_example(example: Example, server: ApiServer, folder: Path) -> list[tuple[str, int]]:
    """Run the block in one bash (variables carry from one command to the next); each
    command's output and exit status."""
    options = example.options()
    stdin = "/dev/null"
    if "input" in options:
        answers = folder / f"input-{example.line}"
        answers.write_text(f"{options['input']}\n{options['input']}\n")
        stdin = str(answers)
    setup = options.get("setup", "").replace(README_URL, server.url)
    script = [f"{{ {setup} ; }} >/dev/null 2>&1" if setup else ""]
    for command in example.commands:
        text = command.text.replace(README_URL, server.url)
        script.append(f"printf '%s\\n' '{_MARK}'")
        script.append(f"{{ {text}\n}} < {shlex.quote(stdin)}")
        script.append(f"printf '\\n%s %s\\n' '{_MARK}' \"$?\"")
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=ROOT,
        env=clean_env(TODO_DATABASE_URL=server.database_url),
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # no controlling terminal: prompts read standard input
    )
    pieces = result.stdout.split(f"{_MARK}\n")[1:]
    outputs = []
    for piece in pieces:
        output, _, status = piece.rpartition(f"\n{_MARK} ")
        outputs.append((output.strip("\n"), int(status.strip() or -1)))
    assert len(outputs) == len(example.commands), (result.stdout, result.stderr)
    return outputs


@pytest.fixture(scope="module")
def readme_servers(
    databases: DatabaseFactory, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ApiServer]]:
    folder = tmp_path_factory.mktemp("readme")
    database_url = databases.create("postgres")
    common = {"TODO_DATABASE_URL": database_url}
    configurations = {
        "basic": {},
        "tokens": {"TODO_USE_TOKEN_AUTH": "true"},
        "limits": {
            "TODO_USE_RATE_LIMITS": "true",
            "TODO_RATE_LIMIT": "5/15s",
            "TODO_REDIS_URL": redis_url,
            "TODO_REDIS_KEY_PREFIX": f"todo-readme-{uuid.uuid4().hex[:8]}:",
        },
    }
    servers: dict[str, ApiServer] = {}
    try:
        for name, settings in configurations.items():
            servers[name] = start_api({**common, **settings}, folder)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def test_every_shell_example_says_how_it_is_checked() -> None:
    examples = readme_examples()
    assert len(examples) >= 10
    unmarked = [example.line for example in examples if example.annotation is None]
    assert unmarked == [], f"README.md ```sh blocks at lines {unmarked} have no example comment"
    for example in examples:
        assert example.annotation is not None
        if example.annotation.startswith("not run:"):
            assert len(example.annotation) > len("not run:") + 10, example.line
        else:
            assert example.annotation.startswith("run "), example.line
            assert example.options()["server"] in ("basic", "tokens", "limits"), example.line


def test_the_readme_examples_give_what_the_readme_shows(
    readme_servers: dict[str, ApiServer], tmp_path: Path
) -> None:
    ran = 0
    for example in readme_examples():
        if example.annotation is None or not example.annotation.startswith("run "):
            continue
        server = readme_servers[example.options()["server"]]
        outputs = run_example(example, server, tmp_path)
        for command, (output, status) in zip(example.commands, outputs, strict=True):
            assert status == 0, (example.line, command.text, output)
            check_output(command, output, server.url)
        ran += 1
    assert ran >= 8


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        ('{"a": 1, ...}', '{"a":1,"b":2}', True),
        ('{"a": 2, ...}', '{"a":1,"b":2}', False),
        (
            '"timestamp":"Tue, 24 Nov 2026 01:15:37 GMT"',
            '"timestamp":"Wed, 02 Dec 2026 13:00:00 GMT"',
            True,
        ),
        ("x-ratelimit-reset: 1795914952", "x-ratelimit-reset: 1764683000", True),
        ("x-ratelimit-reset: 1795914952", "x-ratelimit-reset: 17646830", False),
        (
            '{"token": "eyJhbGciOiJIUzI1NiIs...", "n": 3}',
            '{"token":"eyJhbGciOiJIUzI1NiIsXYZ","n":3}',
            True,
        ),
    ],
)
def test_the_loose_comparison_is_loose_only_where_it_says(
    expected: str, actual: str, matches: bool
) -> None:
    assert bool(pattern(expected).fullmatch(actual)) is matches
