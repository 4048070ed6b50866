"""Rows of any model for admin tests: every required field filled, every foreign key a new row.

A new related row per row is what makes an N+1 query show: a list that fetches each row's
tenant or chip separately then costs one more query per row.
"""
from __future__ import annotations

import itertools
import uuid
from datetime import time, timedelta
from decimal import Decimal

from django.db import models
from django.utils import timezone
from django_scopes import scopes_disabled

_numbers = itertools.count(30_000)

# Values a model needs that a generic filler cannot guess (one of several schedules, etc.).
SPECIAL: dict[str, dict] = {
    "django_celery_beat.periodictask": {"crontab": None, "solar": None, "clocked": None, "task": "whago.tasks.ping",
                                        "args": "[]", "kwargs": "{}", "expires": None, "expire_seconds": None},
    "django_celery_beat.crontabschedule": {"minute": "0", "hour": "*", "day_of_week": "*", "day_of_month": "*",
                                           "month_of_year": "*"},
    "django_celery_beat.intervalschedule": {"period": "minutes"},
    "waha.externalserver": {"runtime": "external", "tenant": None, "port": None},
}


def _value(field: models.Field, depth: int):
    n = next(_numbers)
    if field.choices and not isinstance(field, models.ForeignKey):
        return field.choices[0][0]
    if isinstance(field, models.ForeignKey | models.OneToOneField):
        if depth > 4:
            return None
        return make(field.related_model, _depth=depth + 1)
    if field.has_default() and not field.unique:
        return field.get_default()
    if isinstance(field, models.EmailField):
        return f"row{n}@example.com"
    if isinstance(field, models.URLField):
        return f"https://example.com/{n}"
    if isinstance(field, models.SlugField):
        return f"row-{n}"
    if isinstance(field, models.GenericIPAddressField):
        return "127.0.0.1"
    if isinstance(field, models.UUIDField):
        return uuid.uuid4()
    if isinstance(field, models.CharField | models.TextField):
        return f"{n}-{field.name}"[: field.max_length or 100]
    if isinstance(field, models.BooleanField):
        return False
    if isinstance(field, models.DecimalField):
        return Decimal(n % 90) + Decimal("0.5")
    if isinstance(field, models.FloatField):
        return float(n % 100)
    if isinstance(field, models.SmallIntegerField | models.PositiveSmallIntegerField):
        return n % 30_000
    if isinstance(field, models.IntegerField | models.BigIntegerField | models.PositiveIntegerField):
        return n
    if isinstance(field, models.DateTimeField):
        return timezone.now() - timedelta(minutes=n % 1000)
    if isinstance(field, models.DateField):
        return timezone.localdate() - timedelta(days=n % 1000)
    if isinstance(field, models.TimeField):
        return time(8, 0)
    if isinstance(field, models.DurationField):
        return timedelta(minutes=5)
    if isinstance(field, models.JSONField):
        return {}
    if isinstance(field, models.BinaryField):
        return b""
    if isinstance(field, models.FileField):
        return ""
    raise NotImplementedError(f"no value for {field.model.__name__}.{field.name} ({type(field).__name__})")


def make(model: type[models.Model], _depth: int = 0, **values) -> models.Model:
    """One saved row of `model`, with `values` and generated values for everything else."""
    values = {**SPECIAL.get(model._meta.label_lower, {}), **values}
    for field in model._meta.concrete_fields:
        if field.primary_key or field.name in values or getattr(field, "auto_now", False):
            continue
        if getattr(field, "auto_now_add", False):
            continue
        if field.null and not field.is_relation and not field.choices:
            values[field.name] = _value(field, _depth) if not field.has_default() else field.get_default()
            continue
        values[field.name] = _value(field, _depth)
    with scopes_disabled():
        return model._base_manager.create(**values)


def make_many(model: type[models.Model], count: int, **values) -> list[models.Model]:
    """`count` rows, each with its own related rows."""
    return [make(model, **values) for _ in range(count)]
