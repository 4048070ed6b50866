"""The operators' console for proxies: CRUD with write-only passwords, import, history, alerts."""
import pytest
from django.db import connection
from django.urls import reverse
from django_scopes import scopes_disabled

from proxies import services
from proxies.models import Outcome, Proxy, ProxyAlert, ProxyAssignment, ProxyCheck, ProxyProvider

from .conftest import SOCKS_PASSWORD, SOCKS_USER

NO_PROVIDER = "No proxy provider is active"


@pytest.fixture
def ops(client, operator):
    client.force_login(operator)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def raw_password(table: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT password FROM {table} WHERE id = %s", [pk])  # noqa: S608 (fixed table names)
        return cursor.fetchone()[0]


def provider_form(**overrides) -> dict:
    data = {
        "name": "DataImpulse BR", "kind": "gateway", "scheme": "socks5", "host": "gw.dataimpulse.com",
        "port": "824", "username": SOCKS_USER, "password": SOCKS_PASSWORD,
        "username_template": "{username}_session-{session_id}", "country": "BR", "priority": "100",
        "is_active": "on",
    }
    data.update(overrides)
    return data


def test_without_providers_the_admin_says_chips_work_without_proxy(ops):
    for name in ("proxyprovider", "proxy"):
        response = ops.get(reverse(f"admin:proxies_{name}_changelist"))
        assert response.status_code == 200
        assert NO_PROVIDER in response.content.decode()
    ProxyProvider.objects.create(name="gw", kind="gateway", host="gw.example.com", port=824)
    assert NO_PROVIDER not in ops.get(reverse("admin:proxies_proxyprovider_changelist")).content.decode()


def test_the_notice_is_translated(client, operator):
    client.force_login(operator)
    html = client.get(reverse("admin:proxies_proxyprovider_changelist"), HTTP_ACCEPT_LANGUAGE="pt-br")
    assert "sem proxy" in html.content.decode()


def test_provider_password_is_write_only_and_blank_keeps_it(ops):
    response = ops.post(reverse("admin:proxies_proxyprovider_add"), provider_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = ProxyProvider.objects.get(name="DataImpulse BR")
    assert provider.password == SOCKS_PASSWORD
    raw = raw_password("proxies_proxyprovider", provider.pk)
    assert raw.startswith("fernet:") and SOCKS_PASSWORD not in raw

    change_url = reverse("admin:proxies_proxyprovider_change", args=[provider.pk])
    html = ops.get(change_url).content.decode()
    assert SOCKS_PASSWORD not in html and "A password is stored" in html

    # Blank password: the stored one stays.
    assert ops.post(change_url, provider_form(password="", country="AR")).status_code == 302
    provider.refresh_from_db()
    assert provider.password == SOCKS_PASSWORD and provider.country == "AR"

    # A form error re-renders the page without the typed password either.
    response = ops.post(change_url, provider_form(password="Typed-New-Secret-1", port="0"))
    assert response.status_code == 200 and "Typed-New-Secret-1" not in response.content.decode()
    provider.refresh_from_db()
    assert provider.password == SOCKS_PASSWORD

    # A new one replaces it; "remove" clears it.
    ops.post(change_url, provider_form(password="Brand-New-Secret-2"))
    provider.refresh_from_db()
    assert provider.password == "Brand-New-Secret-2"
    ops.post(change_url, provider_form(password="", clear_password="on"))
    provider.refresh_from_db()
    assert provider.password == ""

    history = ops.get(reverse("admin:proxies_proxyprovider_history", args=[provider.pk])).content.decode()
    assert SOCKS_PASSWORD not in history and "Brand-New-Secret-2" not in history


def test_gateway_form_explains_missing_fields(ops):
    response = ops.post(reverse("admin:proxies_proxyprovider_add"), provider_form(host="", port="",
                                                                                  username_template="{user}"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "A gateway needs a host." in html and "A gateway needs a port." in html
    assert "Use only {username} and {session_id}" in html
    assert not ProxyProvider.objects.exists()


def test_proxy_crud_keeps_the_password_out_of_the_page(ops):
    provider = ProxyProvider.objects.create(name="Lista", kind="static")
    response = ops.post(reverse("admin:proxies_proxy_add"), {
        "provider": provider.pk, "host": "203.0.113.7", "port": "1080", "username": SOCKS_USER,
        "password": SOCKS_PASSWORD, "is_active": "on",
        "assignments-TOTAL_FORMS": "0", "assignments-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    proxy = Proxy.objects.get()
    assert proxy.password == SOCKS_PASSWORD
    assert SOCKS_PASSWORD not in ops.get(reverse("admin:proxies_proxy_change", args=[proxy.pk])).content.decode()


@pytest.fixture
def populated(make_owner):
    """Providers, proxies, an assignment, checks and alerts, all holding the same known secret."""
    _, tenant = make_owner(company="Padaria Central")
    static = ProxyProvider.objects.create(name="Lista BR", kind="static", country="BR")
    proxy = Proxy.objects.create(provider=static, host="203.0.113.7", port=1080, username=SOCKS_USER,
                                 password=SOCKS_PASSWORD)
    gw = ProxyProvider.objects.create(name="DataImpulse", kind="gateway", host="gw.dataimpulse.com", port=824,
                                      username=SOCKS_USER, password=SOCKS_PASSWORD, priority=200)
    assignment = services.assign(tenant, "chip_42")
    ProxyCheck.objects.create(provider=static, proxy=proxy, outcome=Outcome.AUTH_FAILED, detail="the proxy "
                              "rejected the username or password")
    services.open_alert(ProxyAlert.Kind.UNHEALTHY, static, proxy, "proxy 203.0.113.7:1080 of Lista BR failed")
    return {"static": static, "proxy": proxy, "gateway": gw, "assignment": assignment}


def test_no_admin_page_shows_a_credential(ops, populated):
    assignment = populated["assignment"]
    pages = [
        reverse("admin:proxies_proxyprovider_changelist"),
        reverse("admin:proxies_proxyprovider_change", args=[populated["static"].pk]),
        reverse("admin:proxies_proxyprovider_change", args=[populated["gateway"].pk]),
        reverse("admin:proxies_proxy_changelist"),
        reverse("admin:proxies_proxy_change", args=[populated["proxy"].pk]),
        reverse("admin:proxies_proxyassignment_changelist"),
        reverse("admin:proxies_proxyassignment_change", args=[assignment.pk]),
        reverse("admin:proxies_proxycheck_changelist"),
        reverse("admin:proxies_proxyalert_changelist"),
        reverse("admin:proxies_proxy_import"),
        reverse("admin:index"),
    ]
    for url in pages:
        response = ops.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert SOCKS_PASSWORD not in html, url
        assert assignment.session_id not in html, url  # only the masked id is shown


def test_assignments_are_listed_per_proxy(ops, populated):
    proxy, assignment = populated["proxy"], populated["assignment"]
    html = ops.get(reverse("admin:proxies_proxy_change", args=[proxy.pk])).content.decode()
    assert "chip_42" in html and "Padaria Central" in html and assignment.masked_session_id in html
    listing = ops.get(reverse("admin:proxies_proxyassignment_changelist"),
                      {"proxy__id__exact": proxy.pk, "active": "yes"}).content.decode()
    assert "chip_42" in listing
    other = ops.get(reverse("admin:proxies_proxyassignment_changelist"),
                    {"provider__id__exact": populated["gateway"].pk, "active": "yes"}).content.decode()
    assert "chip_42" not in other


def test_health_history_and_alerts_are_listed(ops, populated):
    html = ops.get(reverse("admin:proxies_proxycheck_changelist"),
                   {"proxy__id__exact": populated["proxy"].pk}).content.decode()
    assert "Wrong credentials" in html and "rejected the username or password" in html
    alerts = ops.get(reverse("admin:proxies_proxyalert_changelist"), {"open": "yes"}).content.decode()
    assert "failed" in alerts and "Proxy unhealthy" in alerts
    alert = ProxyAlert.objects.get()
    ops.post(reverse("admin:proxies_proxyalert_changelist"), {"action": "resolve", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_rotate_action(ops, populated, django_capture_on_commit_callbacks, signal_log):
    assignment = populated["assignment"]
    Proxy.objects.create(provider=populated["static"], host="203.0.113.8", port=1080)
    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(reverse("admin:proxies_proxyassignment_changelist"),
                            {"action": "rotate", "_selected_action": [assignment.pk]}, follow=True)
    assert "1 session rotated." in response.content.decode()
    with scopes_disabled():
        assignment.refresh_from_db()
    assert assignment.proxy.host == "203.0.113.8"
    assert signal_log == [("chip_42", "rotated", assignment.proxy_id, populated["static"].pk)]


def test_check_now_action_reports_failures_without_secrets(ops, microsocks, http_target, static_list):
    socks = microsocks(auth=True)
    provider = static_list([socks])
    proxy = Proxy.objects.get(provider=provider)
    proxy.password = "Wrong-Secret-9"  # not the server's
    proxy.save()
    response = ops.post(reverse("admin:proxies_proxy_changelist"),
                        {"action": "check_now", "_selected_action": [proxy.pk]}, follow=True)
    html = response.content.decode()
    assert "Wrong credentials" in html and "Wrong-Secret-9" not in html
    assert ProxyCheck.objects.get(proxy=proxy).outcome == Outcome.AUTH_FAILED


def test_bulk_import_through_the_admin(ops):
    provider = ProxyProvider.objects.create(name="Lista", kind="static")
    lines = (f"203.0.113.10:1080:{SOCKS_USER}:{SOCKS_PASSWORD}\n"
             "203.0.113.11:1080\n"
             f"203.0.113.12:notaport:{SOCKS_USER}:{SOCKS_PASSWORD}\n"
             "just-a-host\n")
    response = ops.post(reverse("admin:proxies_proxy_import"), {"provider": provider.pk, "lines": lines})
    assert response.status_code == 200
    html = response.content.decode()
    assert "2 created, 0 updated, 0 unchanged" in html
    assert html.count('class="import-error"') == 2
    assert "<td>3</td>" in html and "the port must be a number from 1 to 65535" in html
    assert "<td>4</td>" in html and "expected host:port or host:port:user:pass" in html
    assert SOCKS_PASSWORD not in html  # neither in the report nor echoed back in the form
    assert set(Proxy.objects.values_list("host", flat=True)) == {"203.0.113.10", "203.0.113.11"}
    assert Proxy.objects.get(host="203.0.113.10").password == SOCKS_PASSWORD


def test_import_page_needs_a_static_list_and_staff(ops, client_factory):
    html = ops.get(reverse("admin:proxies_proxy_import")).content.decode()
    assert "There is no static-list provider yet." in html
    anonymous = client_factory().get(reverse("admin:proxies_proxy_import"))
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_assignments_cannot_be_added_or_deleted_by_hand(ops, populated):
    assert ops.get(reverse("admin:proxies_proxyassignment_add")).status_code == 403
    pk = populated["assignment"].pk
    assert ops.post(reverse("admin:proxies_proxyassignment_delete", args=[pk]), {"post": "yes"}).status_code == 403
    with scopes_disabled():
        assert ProxyAssignment.objects.filter(pk=pk).exists()
