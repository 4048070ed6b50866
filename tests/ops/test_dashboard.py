"""The operators' dashboard: totals, the 7-day chart aggregated by the database, in a real browser."""
import json
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from billing.models import Payment, Plan, Subscription
from chips.models import Chip, Message
from waha import manager, ops
from waha.models import AlertState, ContainerAlert, ContainerStatus, SessionStatus, StatsSample, WahaContainer
from whago import services
from whago.models import User

from .conftest import pass_second_factor
from .rows import make

GIB = 1024**3
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def container_row(tenant, port: int, status=ContainerStatus.RUNNING) -> WahaContainer:
    with scopes_disabled():
        return WahaContainer.objects.create(tenant=tenant, name=f"whago-dash-{port}", runtime="docker", port=port,
                                            status=status)


@pytest.mark.django_db
def test_totals(ops_client, make_owner):
    _, alfa = make_owner(company="Alfa")
    _, beta = make_owner(company="Beta")
    _, gama = make_owner(company="Gama")
    services.suspend_tenant(gama, reason="test")
    with scopes_disabled():
        Subscription.objects.filter(tenant=alfa).update(plan=Plan.objects.get(code="BUSINESS"))
        Subscription.objects.filter(tenant=beta).update(status=Subscription.Status.PAST_DUE)
    running_a, running_b = container_row(alfa, 21801), container_row(beta, 21802)
    container_row(gama, 21803, ContainerStatus.STOPPED)
    for container, status in ((running_a, SessionStatus.WORKING), (running_a, SessionStatus.WORKING),
                              (running_b, SessionStatus.SCAN_QR_CODE)):
        make(container.sessions.model, tenant=container.tenant, container=container, status=status)
    chip = make(Chip, tenant=alfa, waha_session=None, proxy_assignment=None)
    now = timezone.now()
    for direction, status in (("OUT", "SENT"), ("OUT", "READ"), ("OUT", "FAILED"), ("IN", "RECEIVED")):
        make(Message, tenant=alfa, chip=chip, direction=direction, status=status, reservation=None)
    old = [make(Message, tenant=alfa, chip=chip, direction="OUT", status="SENT", reservation=None) for _ in range(5)]
    with scopes_disabled():
        Message.objects.filter(pk__in=[m.pk for m in old]).update(created_at=now - timedelta(days=2))
    month_start = timezone.localtime().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for amount, status, paid_at in ((Decimal("99.90"), "paid", now), (Decimal("49.90"), "paid", now),
                                    (Decimal("500.00"), "paid", month_start - timedelta(days=1)),
                                    (Decimal("300.00"), "pending", None)):
        make(Payment, tenant=alfa, amount=amount, status=status, paid_at=paid_at, plan=None, created_by=None)
    # A test payment through the sandbox gateway is not revenue.
    make(Payment, tenant=alfa, amount=Decimal("1000.00"), status="paid", paid_at=now, gateway="sandbox", plan=None,
         created_by=None)
    for state in (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.RESOLVED):
        make(ContainerAlert, state=state, container=None, acknowledged_by=None)

    response = ops_client.get(reverse("ops_dashboard"))

    assert response.status_code == 200
    totals = response.context["totals"]
    assert totals["tenants"] == {"total": 3, "active": 2, "suspended": 1}
    assert totals["subscriptions"]["active"] == 2  # Gama's FREE plan is active too; Beta's is past due
    assert totals["subscriptions"]["paid"] == 1 and totals["subscriptions"]["past_due"] == 1
    assert (totals["containers_running"], totals["containers_stopped"]) == (2, 1)
    sessions = {value: count for _label, count, value in totals["sessions"]}
    assert sessions["WORKING"] == 2 and sessions["SCAN_QR_CODE"] == 1 and totals["sessions_total"] == 3
    assert totals["messages"] == {"sent": 3, "received": 1, "failed": 1}
    assert totals["revenue"] == Decimal("149.80") and totals["revenue_payments"] == 2
    assert totals["alerts"] == {"open": 1, "acknowledged": 1}
    html = response.content.decode()
    assert "149,80" in html and 'id="chart-load"' in html and "chart-4.6.1.umd.min.js" in html


@pytest.mark.django_db
def test_utilisation_is_aggregated_per_hour_by_the_database(make_owner, django_assert_max_num_queries):
    _, tenant = make_owner()
    a, b = container_row(tenant, 21811), container_row(tenant, 21812)
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    two_hours_ago = hour - timedelta(hours=2)
    samples = []
    for minute, (cpu_a, cpu_b) in ((10, (10, 30)), (20, (20, 40))):
        at = two_hours_ago + timedelta(minutes=minute)
        samples += [StatsSample(container=a, cpu_percent=cpu_a, memory_bytes=1 * GIB, memory_percent=10, sessions=3,
                                taken_at=at),
                    StatsSample(container=b, cpu_percent=cpu_b, memory_bytes=3 * GIB, memory_percent=30, sessions=5,
                                taken_at=at)]
    samples.append(StatsSample(container=a, cpu_percent=50, memory_bytes=2 * GIB, memory_percent=20, sessions=2,
                               taken_at=hour - timedelta(minutes=30)))
    samples.append(StatsSample(container=a, cpu_percent=99, memory_bytes=9 * GIB, memory_percent=90, sessions=9,
                               taken_at=hour - timedelta(days=9)))
    with scopes_disabled():
        StatsSample.objects.bulk_create(samples)

    with django_assert_max_num_queries(1):
        series = ops.utilisation(7)

    assert len(series["labels"]) == 7 * 24
    assert series["containers"][-3:] == [2, 1, None]
    assert series["sessions"][-3:] == [8.0, 2.0, None]  # mean over the hour's sweeps
    assert series["cpu"][-3:] == [25.0, 50.0, None]
    assert series["memory_gb"][-3:] == [4.0, 2.0, None]
    assert series["containers"][:-3] == [None] * (7 * 24 - 3)
    assert series["labels"][-1] == timezone.localtime(hour).strftime("%d/%m %Hh")
    one = ops.utilisation(7, container=b)
    assert one["containers"][-3:] == [1, None, None] and one["cpu"][-3] == 35.0

    # The stats sweep (a beat task every minute) prunes samples older than 8 days.
    manager.stats_sweep()
    with scopes_disabled():
        assert StatsSample.objects.count() == 5
        assert not StatsSample.objects.filter(taken_at__lt=hour - timedelta(days=8)).exists()


@pytest.fixture
def page(monkeypatch):
    """A headless chromium page (Debian's; Playwright never downloads a browser)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing: scripts/setup.sh installs it (apt-get install chromium).")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(locale="pt-BR", viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(20_000)
        yield page
        context.close()
        browser.close()


PAINTED = """(id) => {
    const canvas = document.getElementById(id);
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) painted++; }
    return painted;
}"""


@pytest.fixture
def week_of_samples(make_tenant, client) -> str:
    """Three containers sampled every hour of the week (the third since 100 hours ago); an operator's session.

    Made before the browser starts: database work done while Playwright's event loop runs
    would open a connection of its own that outlives the test.
    """
    tenant = make_tenant()
    containers = [container_row(tenant, 21821 + n) for n in range(3)]
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    samples = [
        StatsSample(container=c, cpu_percent=10 + (h % 24) * 2 + n * 5, memory_bytes=(1 + n) * GIB // 2,
                    memory_percent=20 + n, sessions=5 * (n + 1) + h % 7, taken_at=hour - timedelta(hours=h))
        for h in range(7 * 24) for n, c in enumerate(containers) if not (n == 2 and h > 100)
    ]
    with scopes_disabled():
        StatsSample.objects.bulk_create(samples)
    operator = User.objects.create_superuser(email="painel@whago.test", password=None)
    client.force_login(operator)
    pass_second_factor(client, operator)
    return client.cookies["sessionid"].value


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_dashboard_chart_in_a_browser(live_server, week_of_samples, page):
    base = live_server.url.replace("localhost", "127.0.0.1")
    page.context.add_cookies([{"name": "sessionid", "value": week_of_samples, "url": base}])

    page.goto(f"{base}/admin/dashboard/")

    for canvas in ("chart-load", "chart-resources"):
        page.wait_for_function(f"window.Chart && Chart.getChart(document.getElementById('{canvas}'))")
        assert page.evaluate(PAINTED, canvas) > 2000, f"{canvas} is blank"
    datasets = json.loads(page.evaluate(
        "JSON.stringify(Chart.getChart(document.getElementById('chart-load')).data.datasets.map(d => d.data))"))
    assert [len(d) for d in datasets] == [7 * 24, 7 * 24]
    assert datasets[0][0] == 2 and datasets[0][-1] == 3  # the third container's samples start later
    assert "Painel de operações" in page.content()  # the console speaks Portuguese
    page.screenshot(path=str(ARTIFACTS / "ops_dashboard_browser.png"), full_page=True)


def test_a_platform_sampled_for_an_hour_gets_a_chart_of_its_recent_hours(make_owner):
    from whago.console.dashboard import MIN_CHART_HOURS, charts

    _, tenant = make_owner()
    container = container_row(tenant, 21831)
    with scopes_disabled():
        StatsSample.objects.create(container=container, cpu_percent=12, memory_bytes=GIB, memory_percent=10,
                                   sessions=4, taken_at=timezone.now())
    load = charts(ops.utilisation(7))["load"]
    assert len(load["labels"]) == MIN_CHART_HOURS  # not a week with one value at its end
    assert load["datasets"][1]["data"][-1] == 4.0 and load["datasets"][1]["data"][:-1] == [None] * 11


@pytest.fixture
def first_hour(make_tenant, client) -> str:
    """A platform started this hour: one sample; an operator's session."""
    tenant = make_tenant()
    container = container_row(tenant, 21841)
    with scopes_disabled():
        StatsSample.objects.create(container=container, cpu_percent=35, memory_bytes=2 * GIB, memory_percent=20,
                                   sessions=6, taken_at=timezone.now())
    operator = User.objects.create_superuser(email="primeira@whago.test", password=None)
    client.force_login(operator)
    pass_second_factor(client, operator)
    return client.cookies["sessionid"].value


# Pixels of exactly the sessions series' colour (#2e7d32) inside the plot area (the legend's swatch is outside):
# its lone value must be drawn, not only the axes.
SERIES_PIXELS = """(id) => {
    const canvas = document.getElementById(id);
    const area = Chart.getChart(canvas).chartArea, ratio = canvas.width / canvas.clientWidth;
    const x = Math.floor(area.left * ratio), y = Math.floor(area.top * ratio);
    const w = Math.ceil((area.right - area.left) * ratio) + 8, h = Math.ceil((area.bottom - area.top) * ratio);
    const pixels = canvas.getContext("2d").getImageData(x, y, w, h).data;
    let n = 0;
    for (let i = 0; i < pixels.length; i += 4) {
        if (pixels[i] === 0x2e && pixels[i + 1] === 0x7d && pixels[i + 2] === 0x32 && pixels[i + 3] === 255) n++;
    }
    return n;
}"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_chart_is_not_blank_in_the_first_hour(live_server, first_hour, page):
    base = live_server.url.replace("localhost", "127.0.0.1")
    page.context.add_cookies([{"name": "sessionid", "value": first_hour, "url": base}])
    page.goto(f"{base}/admin/dashboard/")
    page.wait_for_function("window.Chart && Chart.getChart(document.getElementById('chart-load'))")
    assert page.evaluate(SERIES_PIXELS, "chart-load") > 10
    page.screenshot(path=str(ARTIFACTS / "ops_dashboard_first_hour.png"), full_page=True)
