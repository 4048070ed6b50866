"""Assignment, rotation, release, WAHA config and portal summary of proxies (real PostgreSQL)."""
import re
import threading

import pytest
from django.db import connection
from django.utils import translation
from django_scopes import ScopeError, scope, scopes_disabled

from proxies import services
from proxies.models import DATAIMPULSE_TEMPLATE, Proxy, ProxyAssignment, ProxyProvider

from .conftest import SOCKS_PASSWORD, SOCKS_USER


class FakeServer:
    """A proxy endpoint that is never contacted (these tests do not touch the network)."""

    def __init__(self, port: int, user: str | None = SOCKS_USER, password: str | None = SOCKS_PASSWORD):
        self.port, self.user, self.password = port, user, password


def test_without_any_provider_sessions_get_no_proxy(make_owner):
    _, tenant = make_owner()
    assert services.providers_configured() is False
    assert services.assign(tenant, "chip_1") is None
    assert services.waha_proxy_config(None) is None
    assert services.egress_summary(None) is None


def test_inactive_provider_counts_as_none(make_owner, gateway):
    _, tenant = make_owner()
    gateway(FakeServer(1080), is_active=False)
    assert services.assign(tenant, "chip_1") is None


def test_gateway_gives_a_fresh_sticky_session_in_the_dataimpulse_form(make_owner, gateway):
    _, tenant = make_owner()
    provider = gateway(FakeServer(824), name="DataImpulse BR")
    assert provider.username_template == DATAIMPULSE_TEMPLATE

    first = services.assign(tenant, "chip_1")
    second = services.assign(tenant, "chip_2")

    assert re.fullmatch(r"[a-z0-9]{12}", first.session_id)
    assert first.session_id != second.session_id
    assert first.provider == provider and first.proxy is None
    assert services.waha_proxy_config(first) == {
        "server": f"socks5://127.0.0.1:{provider.port}",
        "username": f"{SOCKS_USER}_session-{first.session_id}",
        "password": SOCKS_PASSWORD,
    }


def test_assign_is_idempotent_per_session_and_refuses_another_tenants_session(make_owner, gateway):
    _, tenant = make_owner()
    _, other = make_owner()
    gateway(FakeServer(824))
    first = services.assign(tenant, "chip_7")
    assert services.assign(tenant, "chip_7").pk == first.pk
    with pytest.raises(ValueError):
        services.assign(other, "chip_7")
    with scopes_disabled():
        assert ProxyAssignment.objects.filter(session_name="chip_7").count() == 1


def test_gateway_without_credentials_and_http_scheme(make_owner, gateway):
    _, tenant = make_owner()
    gateway(FakeServer(3128, None, None), scheme="http")
    assignment = services.assign(tenant, "chip_1")
    assert services.waha_proxy_config(assignment) == {"server": "http://127.0.0.1:3128"}


def test_static_list_spreads_sessions_over_the_least_used_healthy_proxies(make_owner, static_list):
    _, tenant = make_owner()
    provider = static_list([FakeServer(2001), FakeServer(2002), FakeServer(2003)])
    with scopes_disabled():
        sick = Proxy.objects.get(provider=provider, port=2003)
    sick.healthy = False
    sick.save()

    ports = [services.assign(tenant, f"chip_{n}").proxy.port for n in range(4)]

    assert sorted(ports[:2]) == [2001, 2002]
    assert sorted(ports) == [2001, 2001, 2002, 2002]
    config = services.waha_proxy_config(services.assignment_for("chip_0"))
    assert config == {"server": f"socks5://127.0.0.1:{ports[0]}", "username": SOCKS_USER, "password": SOCKS_PASSWORD}


def test_released_sessions_no_longer_count_as_load(make_owner, static_list):
    _, tenant = make_owner()
    static_list([FakeServer(2001), FakeServer(2002)])
    first = services.assign(tenant, "chip_a")
    services.assign(tenant, "chip_b")
    assert services.release("chip_a") is True
    third = services.assign(tenant, "chip_c")
    assert third.proxy == first.proxy


def test_all_proxies_unhealthy_is_an_error_not_a_silent_direct_connection(make_owner, static_list):
    _, tenant = make_owner()
    provider = static_list([FakeServer(2001)])
    with scopes_disabled():
        provider.proxies.update(healthy=False)
    with pytest.raises(services.ProxyUnavailable):
        services.assign(tenant, "chip_1")


def test_providers_are_used_by_priority(make_owner, static_list, gateway):
    _, tenant = make_owner()
    static_list([FakeServer(2001)], priority=50)
    gateway(FakeServer(824), priority=10)
    assert services.assign(tenant, "chip_1").proxy is None  # the gateway comes first


@pytest.mark.django_db(transaction=True)
def test_simultaneous_assignments_spread_across_the_list(make_tenant, static_list):
    tenant = make_tenant()
    static_list([FakeServer(2001), FakeServer(2002)])
    for round_number in range(6):
        barrier = threading.Barrier(2)
        results: dict[str, int] = {}
        errors: list[BaseException] = []

        def worker(name: str, barrier=barrier, results=results, errors=errors):
            try:
                barrier.wait()
                results[name] = services.assign(tenant, name).proxy.port
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                connection.close()

        names = [f"chip_r{round_number}_a", f"chip_r{round_number}_b"]
        threads = [threading.Thread(target=worker, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        assert sorted(results.values()) == [2001, 2002], f"round {round_number}: {results}"
        for name in names:
            services.release(name)


def test_rotate_on_a_gateway_gives_a_new_sticky_session(make_owner, gateway, signal_log,
                                                       django_capture_on_commit_callbacks):
    _, tenant = make_owner()
    provider = gateway(FakeServer(824))
    assignment = services.assign(tenant, "chip_1")
    old_id = assignment.session_id

    with django_capture_on_commit_callbacks(execute=True):
        rotated = services.rotate(assignment)

    assert rotated.session_id != old_id and rotated.provider == provider
    assert rotated.rotations == 1 and rotated.rotated_at is not None
    assert services.waha_proxy_config(rotated)["username"] == f"{SOCKS_USER}_session-{rotated.session_id}"
    assert signal_log == [("chip_1", "rotated", None, provider.pk)]


def test_rotate_on_a_static_list_moves_to_another_proxy(make_owner, static_list, signal_log,
                                                       django_capture_on_commit_callbacks):
    _, tenant = make_owner()
    static_list([FakeServer(2001), FakeServer(2002)])
    assignment = services.assign(tenant, "chip_1")
    before = assignment.proxy.port
    with django_capture_on_commit_callbacks(execute=True):
        rotated = services.rotate(assignment)
    assert rotated.proxy.port != before
    assert signal_log and signal_log[0][:2] == ("chip_1", "rotated")


def test_rotate_with_nowhere_else_to_go_says_so_and_changes_nothing(make_owner, static_list, signal_log):
    _, tenant = make_owner()
    static_list([FakeServer(2001)])
    assignment = services.assign(tenant, "chip_1")
    with pytest.raises(services.ProxyUnavailable):
        services.rotate(assignment)
    with scopes_disabled():
        assignment.refresh_from_db()
    assert assignment.rotations == 0 and signal_log == []


def test_release_ends_the_assignment_and_frees_the_session_name(make_owner, gateway):
    _, tenant = make_owner()
    gateway(FakeServer(824))
    first = services.assign(tenant, "chip_1")
    assert services.release("chip_1") is True
    assert services.release("chip_1") is False
    with scopes_disabled():
        first.refresh_from_db()
    assert first.released_at is not None
    assert services.waha_proxy_config(first) is None
    assert services.assignment_for("chip_1") is None
    again = services.assign(tenant, "chip_1")
    assert again.pk != first.pk and again.session_id != first.session_id
    with pytest.raises(ValueError):
        services.rotate(first)


def test_egress_summary_shows_provider_country_and_a_masked_session_only(make_owner, gateway):
    _, tenant = make_owner()
    gateway(FakeServer(824), name="DataImpulse BR", country="BR")
    assignment = services.assign(tenant, "chip_1")
    summary = services.egress_summary(assignment)
    assert summary["provider"] == "DataImpulse BR" and summary["country"] == "BR"
    sid = assignment.session_id
    assert summary["session"] == f"{sid[:2]}{'•' * 8}{sid[-2:]}"
    text = repr(summary)
    for secret in (SOCKS_PASSWORD, SOCKS_USER, sid, "127.0.0.1", "824"):
        assert secret not in text


def test_egress_partial_renders_no_credentials(make_owner, gateway):
    from django.template.loader import render_to_string

    _, tenant = make_owner()
    gateway(FakeServer(824), name="DataImpulse BR")
    assignment = services.assign(tenant, "chip_1")
    html = render_to_string("proxies/egress.html", {"egress": services.egress_summary(assignment)})
    assert "DataImpulse BR" in html and assignment.masked_session_id in html
    assert SOCKS_PASSWORD not in html and SOCKS_USER not in html and assignment.session_id not in html
    # In the site's language (pt-BR), and in English for a viewer who chose it.
    assert "Sem proxy" in render_to_string("proxies/egress.html", {"egress": None})
    with translation.override("en"):
        assert "No proxy" in render_to_string("proxies/egress.html", {"egress": None})


def test_redact_masks_credentials_in_texts_shown_to_tenants(make_owner, gateway):
    _, tenant = make_owner()
    gateway(FakeServer(824))
    assignment = services.assign(tenant, "chip_1")
    config = services.waha_proxy_config(assignment)
    waha_error = (f"Failed to connect socks5://{config['username']}:{config['password']}@127.0.0.1:824 "
                  f"(user {config['username']}, password {config['password']})")
    shown = services.redact(waha_error, assignment)
    assert SOCKS_PASSWORD not in shown and SOCKS_USER not in shown
    assert "socks5://***@127.0.0.1:824" in shown


def test_assignments_are_scoped_to_their_tenant(make_owner, gateway):
    _, tenant_a = make_owner()
    _, tenant_b = make_owner()
    gateway(FakeServer(824))
    a = services.assign(tenant_a, "chip_a")
    services.assign(tenant_b, "chip_b")
    with pytest.raises(ScopeError):
        list(ProxyAssignment.objects.all())
    with scope(tenant=tenant_a):
        assert list(ProxyAssignment.objects.all()) == [a]
        assert not ProxyAssignment.objects.filter(session_name="chip_b").exists()


def test_provider_validation_explains_what_is_wrong(db):
    from django.core.exceptions import ValidationError

    provider = ProxyProvider(name="x", kind=ProxyProvider.Kind.GATEWAY, username_template="{user}-{sid}")
    with pytest.raises(ValidationError) as info:
        provider.full_clean()
    assert {"host", "port", "username_template"} <= set(info.value.message_dict)


IMPORT_TEXT = """\
# comment lines and blank lines are skipped

203.0.113.1:1080:alice:s3cret-one
proxy.example.com:1081
203.0.113.2:99999:bob:s3cret-two
203.0.113.3:1080:carol
203.0.113.4:1080::s3cret-three
bad host!:1080
[2001:db8::1]:1080:dave:pa:ss:with:colons
203.0.113.1:1080:alice:s3cret-again
"""


def test_bulk_import_keeps_good_lines_and_reports_bad_ones(db):
    provider = ProxyProvider.objects.create(name="Lista", kind=ProxyProvider.Kind.STATIC)
    report = services.import_static_list(provider, IMPORT_TEXT)

    assert report.created == 3 and report.updated == 0
    assert [(e.line, e.reason) for e in report.errors] == [
        (5, "the port must be a number from 1 to 65535"),
        (6, "expected host:port or host:port:user:pass"),
        (7, "the username and the password must both be filled in"),
        (8, "the host is not a valid name or IP address"),
        (10, "the same host and port as line 3"),
    ]
    shown = " ".join(e.shown for e in report.errors)
    assert "s3cret" not in shown and "carol" not in shown
    with scopes_disabled():
        proxies = {(p.host, p.port): p for p in provider.proxies.all()}
    assert (proxies[("203.0.113.1", 1080)].username, proxies[("203.0.113.1", 1080)].password) == ("alice", "s3cret-one")
    assert proxies[("proxy.example.com", 1081)].username == ""
    assert proxies[("2001:db8::1", 1080)].password == "pa:ss:with:colons"
    assert proxies[("2001:db8::1", 1080)].endpoint == "socks5://[2001:db8::1]:1080"

    again = services.import_static_list(provider, "203.0.113.1:1080:alice:new-secret\nproxy.example.com:1081\n")
    assert (again.created, again.updated, again.unchanged, again.errors) == (0, 1, 1, [])
    with scopes_disabled():
        assert Proxy.objects.get(host="203.0.113.1").password == "new-secret"


def test_bulk_import_only_into_static_lists(db):
    provider = ProxyProvider.objects.create(name="gw", kind=ProxyProvider.Kind.GATEWAY, host="h", port=1)
    with pytest.raises(ValueError):
        services.import_static_list(provider, "203.0.113.1:1080")


def test_passwords_are_encrypted_at_rest(db):
    provider = ProxyProvider.objects.create(name="Lista", kind=ProxyProvider.Kind.STATIC)
    Proxy.objects.create(provider=provider, host="203.0.113.9", port=1080, username="u", password=SOCKS_PASSWORD)
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM proxies_proxy")
        (raw,) = cursor.fetchone()
    assert raw.startswith("fernet:") and SOCKS_PASSWORD not in raw


def test_an_empty_static_list_is_not_a_configured_provider(make_owner, static_list):
    _, tenant = make_owner()
    provider = static_list([])
    assert services.providers_configured() is False
    assert services.assign(tenant, "chip_1") is None
    Proxy.objects.create(provider=provider, host="127.0.0.1", port=2001, is_active=False)
    assert services.providers_configured() is False
    Proxy.objects.create(provider=provider, host="127.0.0.1", port=2002)
    assert services.providers_configured() is True
    assert services.assign(tenant, "chip_1").proxy.port == 2002
