"""Settings: names, parsing, and refusing bad or unsafe values with one clear line."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.servers import BIN, clean_env
from todo_common.settings import DEV_SECRET_KEY, RateLimit, Settings, SettingsError, load_settings


def test_defaults_match_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("TODO_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///./todo.sqlite3"
    assert settings.redis_url is None
    assert settings.rate_limit == RateLimit(5, 15)
    assert (settings.token_ttl, settings.trusted_proxies, settings.flush_interval) == (3600, 0, 60)
    assert settings.use_token_auth is False and settings.use_rate_limits is False
    assert settings.env == "development"
    assert settings.broker == "filesystem://localhost/"  # no Redis: the local folder broker
    assert str(settings.state_dir) == ".todo-state"


def test_the_broker_follows_redis_unless_set() -> None:
    assert Settings(redis_url="redis://r:6379/0").broker == "redis://r:6379/0"
    assert (
        Settings(redis_url="redis://r:6379/0", broker_url="redis://b:6379/1").broker
        == "redis://b:6379/1"
    )


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [("5/15s", 5, 15), ("100/minute", 100, 60), ("1000/1h", 1000, 3600), ("3 / 2m", 3, 120)],
)
def test_rate_limit_forms(text: str, limit: int, period: int) -> None:
    assert RateLimit.parse(text) == RateLimit(limit, period)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TODO_TOKEN_TTL": "soon"}, "TODO_TOKEN_TTL"),
        ({"TODO_RATE_LIMIT": "lots"}, "TODO_RATE_LIMIT"),
        ({"TODO_USE_TOKEN_AUTH": "maybe"}, "TODO_USE_TOKEN_AUTH"),
        ({"TODO_DATABASE_URL": "mysql://x"}, "TODO_DATABASE_URL"),
        ({"TODO_USE_RATE_LIMITS": "true"}, "TODO_USE_RATE_LIMITS"),
        ({"TODO_ENV": "production"}, "TODO_SECRET_KEY"),
        ({"TODO_ENV": "production", "TODO_SECRET_KEY": "short"}, "TODO_SECRET_KEY"),
        ({"TODO_LOG_LEVEL": "chatty"}, "TODO_LOG_LEVEL"),
        ({"TODO_HITS_FLUSH_THRESHOLD": "0"}, "TODO_HITS_FLUSH_THRESHOLD"),
        ({"TODO_FLUSH_INTERVAL": "-1"}, "TODO_FLUSH_INTERVAL"),
        ({"TODO_ENV": "development", "TODO_TEST_PAUSE_FLUSH_AT": "claimed"}, "TEST_PAUSE"),
    ],
)
@pytest.mark.parametrize("command", ["todo-api", "todo-worker", "todo-scheduler"])
def test_bad_values_stop_the_process_with_one_line(
    env: dict[str, str], named: str, command: str
) -> None:
    result = subprocess.run(
        [str(BIN / command)],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "Traceback" not in result.stderr


def test_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TODO_ENV", "production")
    monkeypatch.setenv("TODO_SECRET_KEY", "hunter2-is-my-secret")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def test_production_accepts_a_long_secret() -> None:
    settings = Settings(env="production", secret_key="x" * 32)  # type: ignore[arg-type]
    assert settings.secret_key != DEV_SECRET_KEY


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("TODO_REDIS_URL", "notaurl", "must be a URL starting with one of redis://"),
        ("TODO_REDIS_URL", "http://cache:6379/0", "must be a URL starting with one of redis://"),
        ("TODO_REDIS_URL", "redis://cache:port/0", "has a port that is not a number"),
        ("TODO_REDIS_URL", "redis:///0", "must name a host"),
        ("TODO_BROKER_URL", "notaurl", "must be a URL starting with one of redis://"),
        ("TODO_BROKER_URL", "amqp://guest@:99999//", "has a port that is not a number"),
    ],
)
def test_a_url_that_cannot_work_is_refused_in_one_line(
    variable: str, value: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith(f"todo: invalid configuration: {variable}: {says}"), message
    assert value not in message and "\n" not in message  # URLs may hold passwords


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache:6379/0",
        "rediss://:pw@cache/1",
        "unix:///run/redis.sock",
        "redis://[::1]:6379",
    ],
)
def test_redis_urls_of_every_kind_are_accepted(url: str) -> None:
    assert Settings(redis_url=url, broker_url=url).broker == url


def test_broker_urls_of_celery_transports_are_accepted() -> None:
    for url in ("amqp://guest:guest@mq:5672//", "pyamqp://mq//", "filesystem://", "memory://"):
        assert Settings(broker_url=url).broker == url
