"""WHAGO end to end on real WAHA Core 2024.10.8 (built from ../shared/waha-core) and on the
simulator's core-2024.10 profile (the same test on both), through the external runtime: the
operator registers the server in the admin, a tenant creates a chip in the portal, the worker
starts its session on that WAHA, its own (unsigned) webhooks move the chip,
a WAHA restart that forgets the config is healed with the config sent again, and deleting the
chip removes the session. Every real session carries a proxy on a closed loopback port."""
import json
import subprocess
import sys

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from chips.models import Chip
from proxies.models import ProxyProvider
from tests.conftest import ROOT, worker_env
from tests.waha.simkit import free_port
from waha import manager
from waha.client import FeatureUnavailable, SessionNotReady
from waha.models import AlertRule, ContainerAlert, ExternalServer, WebhookEvent
from waha.sessions import NOWEB_CONFIG

from .conftest import DOCKER, chip_row, wait_chip, wait_until

pytestmark = DOCKER


@pytest.fixture
def loopback_proxy(db):
    """An HTTP proxy provider on a closed loopback port: WAHA's only egress goes nowhere."""
    port = free_port()
    ProxyProvider.objects.create(name="loopback", kind=ProxyProvider.Kind.GATEWAY, scheme="http",
                                 host="127.0.0.1", port=port, username="", password="")
    return f"http://127.0.0.1:{port}"


def register(client, real) -> ExternalServer:
    """The operator registers the real server in the admin (its capabilities are read from it)."""
    from whago.models import User

    operator = User.objects.create_superuser(email="ops-real@whago.test", password=None)
    client.force_login(operator)
    response = client.post(reverse("admin:waha_externalserver_add"), {
        "name": "waha-core-real", "url": real.base_url, "capacity": "5", "key": "wrong key",
    })
    # Core does not enforce its key, so even a wrong key is "accepted": WHAGO notes it.
    assert response.status_code == 302, response.content.decode()[:2000]
    with scopes_disabled():
        server = ExternalServer.objects.get(name="waha-core-real")
        server.api_key = real.api_key
        server.save(update_fields=["api_key"])
    client.logout()
    return server


def test_a_chip_lives_on_real_waha_core_through_the_external_runtime(
    waha_target, start_worker, client, owner_client, loopback_proxy, settings
):
    real_waha = waha_target
    settings.WAHA_RUNTIME = "external"
    start_worker(WAHA_RUNTIME="external")
    server = register(client, real_waha)
    assert (server.version, server.engine, server.whatsapp_engine) == ("2024.10.8", "core", "NOWEB")
    assert server.capacity == 1 and server.key_enforced is False
    manager.alert_sweep(orphans=[])
    assert ContainerAlert.objects.filter(container=server, rule=AlertRule.INSECURE).exists()
    doctor = subprocess.run([sys.executable, "manage.py", "waha_doctor"], cwd=ROOT, capture_output=True, text=True,
                            env=worker_env(WAHA_RUNTIME="external"), timeout=120)
    assert f"{server.name} ({real_waha.base_url}): healthy, WAHA 2024.10.8 core NOWEB" in doctor.stdout, doctor.stdout
    assert "answers without its API key" in doctor.stdout

    # The tenant creates a chip; the worker places it on the real server and starts `default`.
    owner_client.force_login(owner_client.user)
    assert owner_client.post(reverse("chip_create"), {"alias": "Loja"}).status_code == 302
    chip = Chip.all_objects.with_scopes_disabled().get(tenant=owner_client.tenant)
    chip = wait_chip(chip.pk, Chip.Status.STARTING, timeout=60)
    chip = wait_until(lambda: (row := chip_row(chip.pk)).waha_session_id and row, 60, 0.2, "the session linked")

    # Real WAHA's own webhooks, unsigned, reached WHAGO's receiver through the URL token.
    def real_events():
        with scopes_disabled():
            return list(WebhookEvent.objects.filter(container=server, event="session.status"))

    events = wait_until(real_events, 60, 0.2, "a session.status event from real WAHA")
    assert events[0].event_id.startswith("unsigned:")
    assert events[0].payload["environment"]["tier"] == "CORE"
    assert events[0].tenant_id == owner_client.tenant.pk
    with scopes_disabled():
        session = chip.waha_session
        session.refresh_from_db()
    assert (session.remote_name, session.status) == ("default", "STARTING")

    # What WHAGO gave the real session: its webhook with the token, and the loopback proxy.
    info = real_waha.call("GET", "/api/sessions/default").json()
    assert info["status"] == "STARTING"
    assert info["config"]["proxy"] == {"server": loopback_proxy}
    assert info["config"]["webhooks"][0]["url"] == server.webhook_url
    assert info["config"]["noweb"] == NOWEB_CONFIG  # its message store on, echoed as WHAGO keeps it
    # WAHA's record of a chat (for messages in doubt) needs a WORKING session: real Core waits 5 s, refuses.
    with pytest.raises(SessionNotReady):
        manager.chat_messages(session, "5511988887777@c.us", limit=5)

    # What Core cannot do is refused before WAHA is asked: media, and a pairing code while STARTING.
    with pytest.raises(FeatureUnavailable):
        manager.send_image(session, "5511988887777@c.us", {"mimetype": "image/png", "filename": "a.png",
                                                           "data": "iVBORw0KGgo="})
    with pytest.raises(SessionNotReady):
        manager.request_code(session, "5511988887777")

    # Real WAHA restarts and forgets the config; the health sweep sends it again and starts it.
    real_waha.restart()
    forgotten = real_waha.call("GET", "/api/sessions?all=true").json()
    assert forgotten == [{"name": "default", "status": "STOPPED", "config": None, "me": None}]
    report = manager.health_sweep()
    assert server.name in report["healthy"], (report, ExternalServer.objects.get(pk=server.pk).last_error)
    info = real_waha.call("GET", "/api/sessions/default").json()
    assert info["status"] == "STARTING" and info["config"]["proxy"] == {"server": loopback_proxy}
    with scopes_disabled():
        session.refresh_from_db()
    assert json.loads(session.config)["proxy"] == {"server": loopback_proxy}
    wait_until(lambda: len(real_events()) > len(events), 60, 0.2, "events after the resume")

    # Deleting the chip removes the real session and frees the server's seat.
    owner_client.force_login(owner_client.user)
    assert owner_client.post(reverse("chip_delete", args=[chip.pk])).status_code == 302
    wait_until(lambda: real_waha.call("GET", "/api/sessions?all=true").json() == [], 60, 0.2,
               "the session gone from real WAHA")
    with scopes_disabled():
        assert not server.sessions.exists()


def test_a_socks5_proxy_is_never_handed_to_a_waha_that_cannot_use_it(
    waha_target, start_worker, client, owner_client, settings
):
    """WAHA 2024.10.8 takes HTTP(S) proxies only: the chip fails with a plain message, the operators
    get an alert, and the real server is never given the socks5:// URL."""
    real_waha = waha_target
    ProxyProvider.objects.create(name="socks", kind=ProxyProvider.Kind.GATEWAY, scheme="socks5",
                                 host="127.0.0.1", port=free_port(), username="", password="")
    settings.WAHA_RUNTIME = "external"
    start_worker(WAHA_RUNTIME="external")
    server = register(client, real_waha)

    owner_client.force_login(owner_client.user)
    assert owner_client.post(reverse("chip_create"), {"alias": "Loja"}).status_code == 302
    chip = Chip.all_objects.with_scopes_disabled().get(tenant=owner_client.tenant)
    chip = wait_chip(chip.pk, Chip.Status.FAILED, timeout=60)

    assert "proxy" in chip.last_error and "socks5" not in chip.last_error and "127.0.0.1" not in chip.last_error
    alert = ContainerAlert.objects.get(container=server, rule=AlertRule.PROXY)
    assert "socks5" in alert.message and "HTTP" in alert.message
    sessions = real_waha.call("GET", "/api/sessions?all=true").json()
    assert all("socks5" not in json.dumps(s.get("config")) for s in sessions)
