"""Celery plumbing: the app and task bases, the task contract, enqueueing, task records."""
