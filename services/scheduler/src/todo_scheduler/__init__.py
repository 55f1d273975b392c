"""The todo Celery beat scheduler service.

A skeleton for now: the beat schedule and its entry point arrive with the worker issue.
It sends tasks by name and imports no worker code.
"""
