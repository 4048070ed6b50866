"""Benchmark: the operators' console at scale.

Prints `admin ratio: <x>` = the worst page's p95 render time with 1,000 tenants and containers,
10,000 sessions and chips and 1,000,000 messages (plus webhook events, stats samples, payments,
alerts and audit entries) ÷ that page's p95 on a nearly empty database: the same kind of rows,
30 of each (3 tenants), so that both sides show a full first page (25 rows) and the ratio
measures what the size of the tables costs. Pages: every admin changelist, the dashboard and a
container's page. Goal ≤ 2.

Rows are made by PostgreSQL itself (INSERT ... SELECT over generate_series) and committed, then
VACUUM ANALYZE, as in a database that has been running; each data set is truncated after its
pages were timed. The nearly empty set is timed before and after the big one (the machine's
load drifts), every page once per round.
"""
import statistics
import time
import uuid
from dataclasses import dataclass

import pytest
from django.contrib import admin
from django.core.cache import cache
from django.db import connection
from django.urls import reverse
from django_scopes import scopes_disabled

from billing.models import Payment, Plan, Subscription
from chips.models import Chip, Message
from waha.models import ContainerAlert, StatsSample, WahaContainer, WahaSession, WebhookEvent
from whago.fields import encrypt
from whago.models import AuditLog, Membership, Tenant, User

RUNS = 20  # rounds over every page
WARMUP = 2
UNCACHED = "dashboard, chart not cached"


@dataclass(frozen=True)
class Scale:
    tenants: int  # one owner, one subscription, one container each
    sessions_per_container: int  # one chip per session
    messages_per_chip: int
    events: int
    sample_hours: int  # one stats sample per container per hour
    per_tenant: int  # payments, alerts (x2/5) and audit entries per tenant


BIG = Scale(tenants=1_000, sessions_per_container=10, messages_per_chip=100, events=200_000, sample_hours=7 * 24,
            per_tenant=20)
SMALL = Scale(tenants=3, sessions_per_container=10, messages_per_chip=1, events=30, sample_hours=10, per_tenant=10)


def insert(model, count: int, exprs: dict[str, str], params: dict | None = None) -> int:
    """INSERT count rows with ids max(id)+1.. ; exprs are SQL over g.i (1..count), other columns get
    their default or NULL. Returns the id before the first new row."""
    params = dict(params or {})
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608 - a model's table
        base = cursor.fetchone()[0]
    columns, values = ["id"], [f"{base} + g.i"]
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        column = field.column
        columns.append(connection.ops.quote_name(column))
        if field.name in exprs:
            values.append(exprs[field.name])
        elif field.null:
            values.append("NULL")
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            values.append("now()")
        elif field.has_default():
            key = f"default_{column}"
            params[key] = field.get_db_prep_save(field.get_default(), connection)
            values.append(f"%({key})s")
        elif field.empty_strings_allowed and field.blank:
            values.append("''")
        else:
            raise AssertionError(f"{model.__name__}.{field.name} needs an expression")
    with connection.cursor() as cursor:
        # The SQL is this module's own expressions; values go as parameters.
        cursor.execute(f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
                       f"SELECT {', '.join(values)} FROM generate_series(1, {count}) AS g(i)", params)
        # Rows made later by the ORM take ids after these.
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {base + count})")
    return base


def fill(scale: Scale) -> dict[str, int]:
    """The platform's tables at a scale, made by the database; returns a container's id."""
    run = uuid.uuid4().hex[:6]
    n = scale.tenants
    plans = list(Plan.objects.values_list("id", flat=True))
    plan = f"(ARRAY{plans})[1 + mod(g.i, {len(plans)})]"
    t0 = insert(Tenant, n, {"name": "'Empresa ' || g.i", "slug": f"'bench-{run}-' || g.i",
                            "created_at": "now() - (g.i || ' hours')::interval"})
    u0 = insert(User, n, {"email": f"'dono{run}-' || g.i || '@example.com.br'", "password": "'!'",
                          "full_name": "'Dono ' || g.i"})
    insert(Membership, n, {"tenant": f"{t0} + g.i", "user": f"{u0} + g.i", "role": "'owner'"})
    insert(Subscription, n, {"tenant": f"{t0} + g.i", "plan": plan, "status": "'active'"})
    c0 = insert(WahaContainer, n, {
        "tenant": f"{t0} + g.i", "name": f"'whago-bench-{run}-' || g.i", "runtime": "'docker'",
        "runtime_id": "md5(g.i::text)", "port": f"{40000 + (0 if n > 10 else 5000)} + g.i",
        "api_key": "%(key)s", "webhook_key": "%(key)s",
        "status": "CASE WHEN mod(g.i, 10) = 0 THEN 'stopped' ELSE 'running' END", "capacity": "50",
        "healthy": "mod(g.i, 10) <> 0", "last_cpu_percent": "mod(g.i, 90)::float",
        "last_memory_bytes": "300000000 + g.i", "last_memory_percent": "mod(g.i, 80)::float",
        "started_at": "now() - (g.i || ' minutes')::interval", "last_stats_at": "now()",
    }, {"key": encrypt("bench-secret")})
    per = scale.sessions_per_container
    sessions = n * per
    s0 = insert(WahaSession, sessions, {
        "tenant": f"{t0} + 1 + (g.i - 1) / {per}", "container": f"{c0} + 1 + (g.i - 1) / {per}",
        "name": "'chip_' || g.i", "remote_name": "'chip_' || g.i",
        "status": "(ARRAY['WORKING','WORKING','WORKING','SCAN_QR_CODE','STOPPED'])[1 + mod(g.i, 5)]",
    })
    h0 = insert(Chip, sessions, {
        "tenant": f"{t0} + 1 + (g.i - 1) / {per}", "alias": "'Chip ' || g.i", "status": "'WORKING'",
        "phone": "'+55119' || lpad(g.i::text, 8, '0')", "session_name": "'chip_' || g.i",
        "waha_session": f"{s0} + g.i",
    })
    messages = sessions * scale.messages_per_chip
    insert(Message, messages, {
        "tenant": f"{t0} + 1 + mod(g.i - 1, {sessions}) / {per}", "chip": f"{h0} + 1 + mod(g.i - 1, {sessions})",
        "direction": "CASE WHEN mod(g.i, 4) = 0 THEN 'IN' ELSE 'OUT' END",
        "peer": "'+55219' || lpad(mod(g.i, 99999999)::text, 8, '0')", "body": "'Pedido ' || g.i || ' confirmado'",
        "status": "(ARRAY['SENT','DELIVERED','READ','READ','FAILED'])[1 + mod(g.i, 5)]",
        "idempotency_key": f"'{run}' || md5(g.i::text)",
        # Spread over the last 60 days (86,400 minutes).
        "created_at": f"now() - (g.i::bigint * 86400 / {messages}) * interval '1 minute'",
    })
    insert(WebhookEvent, scale.events, {
        "tenant": f"{t0} + 1 + mod(g.i, {n})", "container": f"{c0} + 1 + mod(g.i, {n})",
        "event_id": "'evt_' || g.i", "event": "'message.ack'", "session": "'chip_' || g.i",
        "payload": """'{"event": "message.ack"}'::jsonb""", "received_at": "now() - (g.i || ' seconds')::interval",
    })
    insert(StatsSample, n * scale.sample_hours, {
        "container": f"{c0} + 1 + mod(g.i - 1, {n})", "cpu_percent": "mod(g.i, 70)::float",
        "memory_bytes": "200000000 + mod(g.i, 1000)", "memory_percent": "mod(g.i, 60)::float",
        "sessions": str(per), "taken_at": f"date_trunc('hour', now()) - (((g.i - 1) / {n}) || ' hours')::interval",
    })
    insert(Payment, scale.per_tenant * n, {
        "tenant": f"{t0} + 1 + mod(g.i, {n})", "reference": f"md5('{run}' || g.i)::uuid", "kind": "'plan'",
        "plan": plan, "amount": "99.90", "gateway": "'sandbox'",
        "status": "CASE WHEN mod(g.i, 5) = 0 THEN 'pending' ELSE 'paid' END",
        "paid_at": "CASE WHEN mod(g.i, 5) = 0 THEN NULL ELSE now() - (g.i || ' hours')::interval END",
    })
    insert(ContainerAlert, scale.per_tenant * n * 2 // 5, {
        "container": f"{c0} + 1 + mod(g.i, {n})", "subject": f"'whago-bench-{run}-' || g.i",
        "rule": "'cpu'", "state": "CASE WHEN mod(g.i, 3) = 0 THEN 'open' ELSE 'resolved' END",
        "message": "'CPU high'", "opened_at": "now() - (g.i || ' minutes')::interval",
    })
    insert(AuditLog, scale.per_tenant * n, {
        "actor_email": "'ops@whago.test'", "action": "'container.restart'", "target_type": "'waha.wahacontainer'",
        "target_id": f"({c0} + 1 + mod(g.i, {n}))::text", "target_repr": "'whago-bench-' || g.i",
        "tenant": f"{t0} + 1 + mod(g.i, {n})", "status": "'succeeded'", "result": "'Restarted.'",
        "created_at": "now() - (g.i || ' minutes')::interval", "finished_at": "now()",
    })
    return {"container": c0 + 1}


def pages() -> dict[str, str]:
    found = {
        model._meta.label: reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for model in admin.site._registry
    }
    found["dashboard"] = reverse("ops_dashboard")
    return found


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1]


def timed(client, urls: dict[str, str]) -> dict[str, list[float]]:
    """Render times per page, in rounds that visit every page once (a load spike hits all pages)."""
    # The dashboard's chart is cached (OPS_CHART_CACHE_SECONDS): its first render aggregates it.
    cache.delete("waha:ops:utilisation:7")
    started = time.perf_counter()
    assert client.get(urls["dashboard"]).status_code == 200
    times: dict[str, list[float]] = {UNCACHED: [time.perf_counter() - started]}
    for round_ in range(WARMUP + RUNS):
        for name, url in urls.items():
            started = time.perf_counter()
            response = client.get(url)
            took = time.perf_counter() - started
            assert response.status_code == 200, url
            if round_ >= WARMUP:
                times.setdefault(name, []).append(took)
    return times


FILLED = (Tenant, User, WahaContainer, Message, WebhookEvent, StatsSample, ContainerAlert, AuditLog)


def empty_tables(operator: User) -> None:
    """Remove a data set (what references tenants and containers goes with them)."""
    tables = ", ".join(model._meta.db_table for model in FILLED if model is not User)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} CASCADE")
    User.objects.exclude(pk=operator.pk).delete()


def measure(client, operator: User, scale: Scale) -> tuple[dict[str, list[float]], float]:
    """Render times per page with the tables at `scale` (made, committed, analysed; emptied after)."""
    started = time.monotonic()
    made = fill(scale)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    took = time.monotonic() - started
    urls = pages()
    urls["container page"] = reverse("admin:waha_wahacontainer_change", args=[made["container"]])
    try:
        result = timed(client, urls)
        if scale is BIG:
            with scopes_disabled():
                counts = (WahaContainer.objects.count(), Chip.objects.count(), Message.objects.count())
            assert counts >= (1_000, 10_000, 1_000_000), counts
    finally:
        empty_tables(operator)
    return result, took


@pytest.mark.django_db(transaction=True)
def test_admin_ratio(client, capsys):
    operator = User.objects.create_superuser(email="bench-ops@whago.test", password=None)
    client.force_login(operator)
    small_before, _ = measure(client, operator, SMALL)
    big, filled = measure(client, operator, BIG)
    small_after, _ = measure(client, operator, SMALL)
    small = {name: small_before[name] + small_after[name] for name in big}
    names = [name for name in big if name != UNCACHED]
    ratios = {name: p95(big[name]) / p95(small[name]) for name in names}
    pooled_big = p95([t for name in names for t in big[name]])
    pooled_small = p95([t for name in names for t in small[name]])

    with capsys.disabled():
        print(f"\nbig data set made by PostgreSQL (and vacuumed) in {filled:.1f} s")
        print(f"{RUNS} rounds over {len(names)} pages")
        print(f"{'page':38} {'p95 small':>10} {'(before/after)':>16} {'p95 big':>9} {'ratio':>6}")
        for name in sorted(ratios, key=ratios.get, reverse=True):
            print(f"{name:38} {p95(small[name]) * 1000:8.1f}ms {p95(small_before[name]) * 1000:7.1f}/"
                  f"{p95(small_after[name]) * 1000:<7.1f} {p95(big[name]) * 1000:7.1f}ms {ratios[name]:6.2f}")
        once = small[UNCACHED][0] * 1000, big[UNCACHED][0] * 1000
        print(f"{UNCACHED} (one render): {once[0]:.0f} ms small, {once[1]:.0f} ms big")
        worst = max(ratios, key=ratios.get)
        print(f"pages: median ratio {statistics.median(ratios.values()):.2f}, worst {ratios[worst]:.2f} ({worst})")
        print(f"admin ratio: {pooled_big / pooled_small:.2f} (p95 of every render: {pooled_big * 1000:.0f} ms at "
              f"scale / {pooled_small * 1000:.0f} ms nearly empty; goal <= 2)")
