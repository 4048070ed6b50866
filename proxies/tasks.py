"""Celery tasks of the proxies app: thin wrappers around services."""
from dataclasses import asdict

from celery import shared_task

from . import services


@shared_task
def check_proxies() -> dict:
    """The beat health sweep: check every proxy and gateway, move sessions off failing ones."""
    return asdict(services.run_health_checks())
