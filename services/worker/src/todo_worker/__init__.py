"""The todo Celery worker (`todo-worker`): runs the project's tasks, such as moving the hit counts
from Redis into the database, and serves its own metrics and liveness probe.

It depends on todo-common only, never on the other services.
"""
