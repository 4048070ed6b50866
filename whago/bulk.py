"""Writing different values to many rows in one statement.

Django's QuerySet.bulk_update builds a CASE with one WHEN per row and field; compiling it costs
more CPU than the sends of a campaign batch (measured: tests/bench/bench_campaign.py). On
PostgreSQL, update_rows writes one UPDATE … FROM (VALUES …) instead; elsewhere (the embedded
SQLite) it falls back to bulk_update. Both only touch the rows the queryset still selects (its
filters are the statement's conditions), and both return the number of rows written.
"""
from __future__ import annotations

from django.db import connections
from django.db.models import Model, QuerySet


def update_rows(queryset: QuerySet, objs: list[Model], fields: list[str]) -> int:
    """Write `fields` of each obj to its row, for the rows `queryset` selects; returns how many."""
    if not objs:
        return 0
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return queryset.bulk_update(objs, fields)
    meta = queryset.model._meta
    columns = [meta.get_field(name) for name in fields]
    row = "(%s::" + meta.pk.db_type(connection) + ", " + ", ".join(
        f"%s::{column.db_type(connection)}" for column in columns) + ")"
    params: list = []
    for obj in objs:
        params.append(obj.pk)
        params.extend(column.get_db_prep_value(getattr(obj, column.attname), connection) for column in columns)
    quote = connection.ops.quote_name
    names = [quote(column.column) for column in columns]
    matched = queryset.filter(pk__in=[obj.pk for obj in objs]).values("pk")
    inner, inner_params = matched.query.sql_with_params()
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    sql = (
        f"UPDATE {table} SET " + ", ".join(f"{name} = v.{name}" for name in names)  # noqa: S608
        + f" FROM (VALUES {', '.join([row] * len(objs))}) AS v(whago_pk, {', '.join(names)})"
        + f" WHERE {table}.{pk} = v.whago_pk AND {table}.{pk} IN ({inner})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *inner_params])
        return cursor.rowcount
