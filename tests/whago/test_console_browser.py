"""The operators' console in a real browser at 1280 px, in pt-BR: the index, the containers and tenants lists and
the dashboard fit the screen (CPU, RAM and alerts columns visible without scrolling), show no English (the
catalogue's msgids and a denylist of what the console used to show) and log no console errors; screenshots in
tests/artifacts/."""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from tests.chips.browserkit import LAPTOP, browser, session_cookie  # noqa: F401 - fixture
from tests.ops.conftest import pass_second_factor
from waha.models import AlertRule, ContainerAlert, ContainerStatus, WahaContainer
from whago.models import User

from .test_console_language import DENYLIST

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Columns whose header must lie inside the window: what an operator looks at first.
COLUMNS = {"containers": ["column-cpu", "column-memory", "column-open_alerts"], "tenants": ["column-payments"]}
# (The list scrolls inside its own box: a column past the box's right edge is hidden until scrolled to.)
RIGHT_EDGES = """(classes) => classes.map((name) => {
    const header = document.querySelector(`#result_list th.${name}`);
    const box = document.querySelector("#changelist .results").getBoundingClientRect();
    const visible = Math.min(box.right, document.documentElement.clientWidth);
    return [name, header ? Math.round(header.getBoundingClientRect().right - visible) : null];
})"""


@pytest.fixture
def console_with_fleet(client, make_owner):
    operator = User.objects.create_superuser(email="console@whago.test", password=None)
    client.force_login(operator)
    pass_second_factor(client, operator)
    now = timezone.now()
    with scopes_disabled():
        for n in range(3):
            _user, tenant = make_owner(company=f"Distribuidora de Bebidas e Alimentos Região Metropolitana {n}")
            container = WahaContainer.objects.create(
                tenant=tenant, name=f"whago-t{tenant.pk}-distribuidora-regiao-metropolitana", runtime="docker",
                port=21950 + n, status=ContainerStatus.RUNNING, healthy=True, started_at=now - timedelta(hours=5),
                node_name="worker-node-sao-paulo-01", last_cpu_percent=37.5, last_memory_bytes=812_000_000,
                last_memory_percent=41.0, last_stats_at=now)
            ContainerAlert.objects.create(container=container, rule=AlertRule.CPU,
                                          subject=container.name, value=97.0, message="CPU acima do limite")
    return client


def test_the_console_fits_1280_px_in_portuguese(console_with_fleet, browser):  # noqa: F811
    browser.cookies = session_cookie(console_with_fleet, browser.base)
    browser.english += DENYLIST
    page = browser.open(LAPTOP)
    problems = []
    pages = {"console": "/admin/", "containers": "/admin/waha/wahacontainer/", "tenants": "/admin/whago/tenant/",
             "console_dashboard": "/admin/dashboard/"}
    for name, path in pages.items():
        response = page.goto(browser.base + path)
        assert response.status == 200, f"{name}: {response.status}"
        page.wait_for_load_state("networkidle")
        problems += browser.check(page, name)
        page.console_errors.clear()
        for column, past in page.evaluate(RIGHT_EDGES, COLUMNS.get(name, [])):
            if past is None or past > 0:
                problems.append(f"{name}: the {column} column is off-screen ({past} px past the list's edge)")
    assert not problems, "\n".join(problems)
