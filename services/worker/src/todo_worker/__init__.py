"""The todo Celery worker service.

A skeleton for now: the tasks, the worker entry point and its metrics arrive with the
worker issue. It depends on todo-common only, never on the other services.
"""
