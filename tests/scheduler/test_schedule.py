"""The beat schedule names the worker's tasks and follows TODO_FLUSH_INTERVAL."""

from __future__ import annotations

from celery.schedules import crontab

from todo_common.celery_app import CLEANUP, FLUSH_HIT_COUNTS, TASK_ROUTES, create_celery
from todo_common.settings import Settings
from todo_scheduler.schedule import beat_schedule


def test_flush_every_interval_and_cleanup_daily() -> None:
    schedule = beat_schedule(Settings(flush_interval=7))
    flush, cleanup = schedule["flush-hit-counts"], schedule["cleanup"]
    assert (flush["task"], flush["schedule"]) == (FLUSH_HIT_COUNTS, 7)
    assert flush["options"]["expires"] >= 7
    assert cleanup["task"] == CLEANUP
    assert isinstance(cleanup["schedule"], crontab)
    assert {entry["task"] for entry in schedule.values()} <= set(TASK_ROUTES)


def test_every_process_builds_the_same_delivery_guarantees(tmp_path: object) -> None:
    conf = create_celery(Settings(redis_url="redis://127.0.0.1:6379/0")).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    # A task is killed long before the broker would hand it to a second worker.
    assert conf.task_time_limit < conf.broker_transport_options["visibility_timeout"]
