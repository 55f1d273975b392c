"""The todo Celery beat scheduler (`todo-scheduler`): sends the project's periodic tasks on their
schedule (exactly one must run per deployment) and serves its own metrics and liveness probe.

It sends tasks by name and imports no worker code; it depends on todo-common only.
"""
