"""Health checks against real microsocks SOCKS5 servers on loopback, and the failover they drive."""
import concurrent.futures
import logging
import socket
import threading
import time

import pytest
import requests
from django.core import mail
from django_scopes import scopes_disabled

from proxies import health, services
from proxies.models import Outcome, Proxy, ProxyAlert, ProxyAssignment, ProxyCheck, ProxyProvider
from tests import waiting

from .conftest import SOCKS_PASSWORD, SOCKS_USER, Socks, free_port


def via(config: dict) -> dict:
    """requests' proxies for a WAHA proxy config (what WAHA itself would use)."""
    scheme, address = config["server"].split("://")
    auth = f"{config['username']}:{config['password']}@" if "username" in config else ""
    url = f"{'socks5h' if scheme == 'socks5' else scheme}://{auth}{address}"
    return {"http": url, "https": url}


@pytest.mark.parametrize("auth", [False, True], ids=["open", "with-login"])
def test_a_request_through_the_assigned_proxy_reaches_the_target(make_owner, microsocks, http_target, static_list,
                                                                 auth):
    _, tenant = make_owner()
    socks = microsocks(auth=auth)
    static_list([socks])
    config = services.waha_proxy_config(services.assign(tenant, "chip_1"))

    response = requests.get(http_target.url, proxies=via(config), timeout=5)

    assert response.status_code == 204
    assert http_target.hits == ["/generate_204"]
    # And the same config without the proxy running fails: the traffic really went through it.
    socks.kill()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(http_target.url, proxies=via(config), timeout=5)


def test_a_gateway_session_reaches_the_target(make_owner, microsocks, http_target, gateway):
    _, tenant = make_owner()
    # microsocks knows one user, so this gateway's template keeps the username as is.
    provider = gateway(microsocks(auth=True), username_template="{username}")
    assignment = services.assign(tenant, "chip_1")
    response = requests.get(http_target.url, proxies=via(services.waha_proxy_config(assignment)), timeout=5)
    assert response.status_code == 204
    check = services.check_now(provider)
    assert check.outcome == Outcome.OK and check.latency_ms is not None


def test_check_of_a_working_proxy_records_latency(microsocks, http_target, static_list):
    provider = static_list([microsocks(auth=True)])
    with scopes_disabled():
        proxy = provider.proxies.get()
    check = services.check_now(provider, proxy)
    proxy.refresh_from_db()
    assert check.outcome == Outcome.OK and check.detail == "HTTP 204"
    assert proxy.healthy and proxy.last_ok is not None and proxy.latency_ms == check.latency_ms
    assert http_target.hits == ["/generate_204"]


def test_wrong_credentials_are_reported_as_such(microsocks, http_target):
    socks = microsocks(auth=True)
    wrong = health.check(health.Endpoint("socks5", "127.0.0.1", socks.port, SOCKS_USER, "not-the-password"),
                         http_target.url, 3)
    missing = health.check(health.Endpoint("socks5", "127.0.0.1", socks.port), http_target.url, 3)
    assert wrong.outcome == Outcome.AUTH_FAILED
    assert "rejected the username or password" in wrong.detail and "not-the-password" not in wrong.detail
    assert missing.outcome == Outcome.AUTH_FAILED and "requires a username and password" in missing.detail
    assert http_target.hits == []


def test_refused_timeout_and_not_a_proxy_are_told_apart(microsocks, http_target):
    socks = microsocks()
    socks.kill()
    refused = health.check(health.Endpoint("socks5", "127.0.0.1", socks.port), http_target.url, 2)
    assert refused.outcome == Outcome.REFUSED

    # A listening socket that never answers: the handshake times out.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        # Run aside: a check that ignored its timeout would hang, and is then caught by the bound.
        endpoint = health.Endpoint("socks5", "127.0.0.1", silent.getsockname()[1])
        pool = concurrent.futures.ThreadPoolExecutor(1)
        try:
            timed_out = pool.submit(health.check, endpoint, http_target.url, 1).result(timeout=waiting.WAIT_SECONDS)
        finally:
            pool.shutdown(wait=False)
        assert timed_out.outcome == Outcome.TIMEOUT
    finally:
        silent.close()

    # A server that speaks another protocol (it greets first, like SSH) is not a SOCKS5 proxy.
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(1)

    def greet():
        conn, _ = other.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.recv(64)
        conn.close()

    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    try:
        not_socks = health.check(health.Endpoint("socks5", "127.0.0.1", other.getsockname()[1]), http_target.url, 2)
    finally:
        thread.join(5)
        other.close()
    assert not_socks.outcome == Outcome.PROTOCOL_ERROR and "SOCKS5" in not_socks.detail


def test_target_unreachable_through_the_proxy(microsocks, http_target):
    socks = microsocks()
    closed_port = free_port()
    result = health.check(health.Endpoint("socks5", "127.0.0.1", socks.port),
                          f"http://127.0.0.1:{closed_port}/generate_204", 2)
    assert result.outcome == Outcome.PROXY_ERROR and f"127.0.0.1:{closed_port}" in result.detail


def test_target_error_status_is_a_failure(microsocks, http_target):
    socks = microsocks()
    result = health.check(health.Endpoint("socks5", "127.0.0.1", socks.port),
                          http_target.url.replace("generate_204", "missing"), 2)
    assert result.outcome == Outcome.HTTP_ERROR and "404" in result.detail


@pytest.mark.django_db(transaction=True)
def test_a_dead_proxy_is_detected_and_its_sessions_move_to_a_healthy_one(
    make_tenant, microsocks, http_target, static_list, signal_log, settings
):
    settings.PROXY_FAILURE_THRESHOLD = 2
    settings.OPERATOR_EMAILS = ["ops@whago.test"]
    tenant = make_tenant()
    first, second = microsocks(auth=True), microsocks(auth=True)
    provider = static_list([first, second])
    with scopes_disabled():
        dying = Proxy.objects.get(port=first.port)
        healthy = Proxy.objects.get(port=second.port)
    # Both sessions on the proxy that will die (the other one is busy).
    with scopes_disabled():
        for name in ("chip_1", "chip_2"):
            ProxyAssignment.objects.create(tenant=tenant, session_name=name, provider=provider, proxy=dying)

    report = services.run_health_checks()
    assert (report.checked, report.failed, report.moved) == (2, 0, 0)

    first.kill()
    report = services.run_health_checks()  # one failure: not yet unhealthy
    dying.refresh_from_db()
    assert report.failed == 1 and dying.healthy and dying.consecutive_failures == 1
    assert signal_log == []

    report = services.run_health_checks()  # second failure: unhealthy, sessions moved
    dying.refresh_from_db()
    assert not dying.healthy and dying.last_outcome == Outcome.REFUSED
    assert report.moved == 2 and report.stranded == 0
    with scopes_disabled():
        moved = list(ProxyAssignment.objects.filter(session_name__in=["chip_1", "chip_2"]).order_by("session_name"))
    assert [a.proxy_id for a in moved] == [healthy.pk, healthy.pk]
    assert all(a.rotations == 1 for a in moved)
    assert sorted(signal_log) == [("chip_1", "proxy_unhealthy", healthy.pk, provider.pk),
                                  ("chip_2", "proxy_unhealthy", healthy.pk, provider.pk)]
    kinds = set(ProxyAlert.objects.filter(proxy=dying).values_list("kind", flat=True))
    assert kinds == {ProxyAlert.Kind.UNHEALTHY, ProxyAlert.Kind.MOVED}
    assert len(mail.outbox) == 2 and mail.outbox[0].to == ["ops@whago.test"]
    assert ProxyCheck.objects.filter(proxy=dying, outcome=Outcome.REFUSED).count() == 2

    # The moved sessions really work through their new proxy.
    config = services.waha_proxy_config(moved[0])
    assert requests.get(http_target.url, proxies=via(config), timeout=5).status_code == 204

    # A new session is not given the dead proxy.
    assert services.assign(tenant, "chip_3").proxy_id == healthy.pk

    # It comes back: healthy again at the first success, its unhealthy alert resolved.
    microsocks.started.append(Socks(first.port, first.user, first.password).start())
    services.run_health_checks()
    dying.refresh_from_db()
    assert dying.healthy and dying.consecutive_failures == 0
    assert not ProxyAlert.objects.filter(proxy=dying, kind=ProxyAlert.Kind.UNHEALTHY, resolved_at__isnull=True)


@pytest.mark.django_db(transaction=True)
def test_with_no_healthy_proxy_left_sessions_stay_and_operators_are_told_once(
    make_tenant, microsocks, http_target, static_list, signal_log, settings
):
    settings.PROXY_FAILURE_THRESHOLD = 1
    tenant = make_tenant()
    only = microsocks()
    static_list([only])
    services.assign(tenant, "chip_1")
    only.kill()

    for _ in range(3):
        report = services.run_health_checks()
        assert report.stranded == 1 and report.moved == 0
    assert signal_log == []
    assert ProxyAlert.objects.filter(kind=ProxyAlert.Kind.NO_HEALTHY, resolved_at__isnull=True).count() == 1
    assert ProxyAlert.objects.filter(kind=ProxyAlert.Kind.UNHEALTHY).count() == 1
    with pytest.raises(services.ProxyUnavailable):
        services.assign(tenant, "chip_2")


@pytest.mark.django_db(transaction=True)
def test_a_failing_gateway_hands_its_sessions_to_another_provider(
    make_tenant, microsocks, http_target, gateway, static_list, signal_log, settings
):
    settings.PROXY_FAILURE_THRESHOLD = 1
    tenant = make_tenant()
    gw_socks = microsocks(auth=True)
    gw = gateway(gw_socks, username_template="{username}", priority=1)
    spare = static_list([microsocks()], priority=2)
    assignment = services.assign(tenant, "chip_1")
    assert assignment.provider_id == gw.pk

    gw_socks.kill()
    report = services.run_health_checks()

    assert report.moved == 1
    with scopes_disabled():
        assignment.refresh_from_db()
    assert assignment.provider_id == spare.pk and assignment.proxy is not None
    assert signal_log[0][:2] == ("chip_1", "proxy_unhealthy")
    assert ProxyAlert.objects.filter(provider=gw, proxy__isnull=True, kind=ProxyAlert.Kind.UNHEALTHY).exists()


@pytest.mark.django_db(transaction=True)
def test_disabling_a_proxy_moves_its_sessions(make_tenant, microsocks, http_target, static_list, signal_log):
    tenant = make_tenant()
    provider = static_list([microsocks(), microsocks()])
    assignment = services.assign(tenant, "chip_1")
    Proxy.objects.filter(pk=assignment.proxy_id).update(is_active=False)
    services.run_health_checks()
    with scopes_disabled():
        assignment.refresh_from_db()
    assert assignment.proxy.is_active and assignment.provider_id == provider.pk
    assert signal_log[0][:2] == ("chip_1", "proxy_disabled")


@pytest.mark.django_db(transaction=True)
def test_credentials_never_reach_the_logs(make_tenant, microsocks, http_target, static_list, gateway, caplog,
                                          settings):
    settings.PROXY_FAILURE_THRESHOLD = 1
    caplog.set_level(logging.DEBUG)
    tenant = make_tenant()
    good, dying = microsocks(auth=True), microsocks(auth=True)
    wrong_password = microsocks(auth=True, password="Another-Pw-8c1")
    static_list([good, dying])
    gw = gateway(wrong_password, name="Gateway errado", priority=500)  # our stored password is not its password
    gw.password = SOCKS_PASSWORD
    gw.save()
    assignment = services.assign(tenant, "chip_1")
    services.waha_proxy_config(assignment)
    services.rotate(assignment)
    services.assign(tenant, "chip_2")
    dying.kill()
    services.run_health_checks()
    services.release("chip_1")

    assert ProxyCheck.objects.filter(provider=gw, outcome=Outcome.AUTH_FAILED).exists()
    assert "proxy check" in caplog.text  # the failures were logged...
    for secret in (SOCKS_PASSWORD, "Another-Pw-8c1", SOCKS_USER):  # ...without any credential
        assert secret not in caplog.text
    details = " ".join(ProxyCheck.objects.values_list("detail", flat=True))
    messages = " ".join(ProxyAlert.objects.values_list("message", flat=True))
    for secret in (SOCKS_PASSWORD, SOCKS_USER):
        assert secret not in details and secret not in messages


def test_unexpected_errors_are_sanitised(settings):
    # A check URL that is not http(s) raises inside the check; the result must not echo secrets.
    result = health.check(health.Endpoint("socks5", "127.0.0.1", 9, SOCKS_USER, SOCKS_PASSWORD),
                          f"ftp://{SOCKS_USER}:{SOCKS_PASSWORD}@127.0.0.1/", 1)
    assert result.outcome == Outcome.PROXY_ERROR
    assert SOCKS_PASSWORD not in result.detail and SOCKS_USER not in result.detail


@pytest.fixture
def worker_check_url(http_target, monkeypatch):
    """The worker subprocess reads PROXY_CHECK_URL from its environment."""
    monkeypatch.setenv("PROXY_CHECK_URL", http_target.url)
    monkeypatch.setenv("PROXY_CHECK_TIMEOUT", "3")
    return http_target


def test_the_sweep_runs_in_a_real_celery_worker(worker_check_url, celery_worker, microsocks, static_list):
    from proxies.tasks import check_proxies

    alive, dead = microsocks(auth=True), microsocks(auth=True)
    provider = static_list([alive, dead])
    dead.kill()
    check_proxies.delay()

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and ProxyCheck.objects.filter(provider=provider).count() < 2:
        time.sleep(0.2)
    outcomes = dict(ProxyCheck.objects.filter(provider=provider).values_list("proxy__port", "outcome"))
    assert outcomes == {alive.port: Outcome.OK, dead.port: Outcome.REFUSED}, celery_worker.log()[-3000:]
    assert worker_check_url.hits == ["/generate_204"]
    assert ProxyProvider.objects.get(pk=provider.pk).proxies.filter(consecutive_failures=1).count() == 1


def test_an_http_proxy_gateway_works_and_reports_wrong_credentials(make_owner, tinyproxy, http_target, gateway):
    _, tenant = make_owner()
    server = tinyproxy(auth=True)
    provider = gateway(server, scheme="http", username_template="{username}")
    config = services.waha_proxy_config(services.assign(tenant, "chip_1"))
    assert config["server"] == f"http://127.0.0.1:{server.port}"

    assert requests.get(http_target.url, proxies=via(config), timeout=5).status_code == 204
    assert services.check_now(provider).outcome == Outcome.OK
    assert http_target.hits == ["/generate_204", "/generate_204"]

    wrong = health.Endpoint("http", "127.0.0.1", server.port, SOCKS_USER, "not-the-password")
    missing = health.Endpoint("http", "127.0.0.1", server.port)
    https_url = http_target.url.replace("http://", "https://")
    for endpoint in (wrong, missing):
        for url in (http_target.url, https_url):  # forwarded GET, and CONNECT tunnel
            result = health.check(endpoint, url, 3)
            assert result.outcome == Outcome.AUTH_FAILED, (endpoint, url, result)
            assert "not-the-password" not in result.detail
    # With the right login the CONNECT tunnel opens; TLS then fails against a plain-HTTP target.
    tunnel = health.check(health.Endpoint("http", "127.0.0.1", server.port, SOCKS_USER, SOCKS_PASSWORD), https_url, 3)
    assert tunnel.outcome == Outcome.HTTP_ERROR and "TLS" in tunnel.detail
    assert len(http_target.hits) == 2
