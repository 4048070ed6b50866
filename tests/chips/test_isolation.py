"""Tenant B gets 404 for every chip and message page and API endpoint of tenant A, and changes nothing."""
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django_scopes import scopes_disabled

from chips.models import Chip, Message

from .conftest import chip_row, placed_chip, set_plan

pytestmark = pytest.mark.django_db

PEER = "+5511988887777"

PORTAL = [
    ("get", "chip_detail", "chip", None),
    ("get", "chip_status", "chip", None),
    ("get", "chip_qr", "chip", None),
    ("post", "chip_pairing_code", "chip", {"phone": "11999990001"}),
    ("post", "chip_connect", "chip", None),
    ("post", "chip_restart", "chip", None),
    ("post", "chip_disconnect", "chip", None),
    ("post", "chip_rename", "chip", {"alias": "Roubado"}),
    ("get", "chip_delete", "chip", None),
    ("post", "chip_delete", "chip", None),
    ("get", "chip_inbox", "chip", None),
    ("get", "conversation", "conversation", None),
    ("get", "message_detail", "message", None),
    ("get", "message_media", "message", None),
]

API = [
    ("get", "/api/v1/chips/{chip}/", None),
    ("patch", "/api/v1/chips/{chip}/", {"alias": "Roubado"}),
    ("delete", "/api/v1/chips/{chip}/", None),
    ("get", "/api/v1/chips/{chip}/qr", None),
    ("get", "/api/v1/chips/{chip}/qr.png", None),
    ("post", "/api/v1/chips/{chip}/connect", {"method": "qr"}),
    ("post", "/api/v1/chips/{chip}/connect", {"method": "code", "phone_number": "11999990001"}),
    ("post", "/api/v1/chips/{chip}/disconnect", None),
    ("post", "/api/v1/chips/{chip}/restart", None),
    ("get", "/api/v1/messages/{message}/", None),
    ("post", "/api/v1/messages/", {"chip": "{chip}", "to": "11988887777", "text": "Oi"}),
]


@pytest.fixture
def tenant_a(make_owner):
    """Tenant A with a connected chip, a conversation and a message with a file."""
    _, tenant = make_owner()
    chip = placed_chip(tenant, alias="Filial Secreta")
    with scopes_disabled():
        message = Message(tenant=tenant, chip=chip, peer=PEER, kind=Message.Kind.DOCUMENT, body="segredo",
                          status=Message.Status.DELIVERED, media_name="contrato.pdf", media_mimetype="application/pdf")
        message.media.save("contrato.pdf", ContentFile(b"%PDF-1.4 segredo"), save=True)
    return tenant, chip, message


@pytest.fixture
def intruder(client, make_owner):
    user, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    client.force_login(user)
    client.tenant = tenant
    return client


def _unchanged(chip, message):
    after = chip_row(chip.pk)
    assert (after.alias, after.status, after.deleted_at) == ("Filial Secreta", Chip.Status.WORKING, None)
    with scopes_disabled():
        assert Message.objects.filter(tenant=chip.tenant).count() == 1
        assert Message.objects.filter(chip=chip, body="segredo").exists()


@pytest.mark.parametrize(("method", "name", "target", "data"), PORTAL, ids=[f"{m}-{n}" for m, n, _, _ in PORTAL])
def test_portal_pages_of_another_tenant_are_404(tenant_a, intruder, method, name, target, data):
    _, chip, message = tenant_a
    args = {"chip": [chip.pk], "message": [message.pk], "conversation": [chip.pk, PEER[1:]]}[target]
    response = getattr(intruder, method)(reverse(name, args=args), data or {})
    assert response.status_code == 404
    assert b"segredo" not in response.content and b"Filial Secreta" not in response.content
    _unchanged(chip, message)


@pytest.mark.parametrize(("method", "path", "data"), API, ids=[f"{m}-{p}" for m, p, _ in API])
def test_api_endpoints_of_another_tenant_are_404(tenant_a, intruder, api, method, path, data):
    _, chip, message = tenant_a
    client = api(intruder.tenant)
    url = path.format(chip=chip.pk, message=message.pk)
    body = {k: (v.format(chip=chip.pk) if isinstance(v, str) else v) for k, v in (data or {}).items()}
    response = getattr(client, method)(url, body, content_type="application/json")
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "not_found"
    assert b"segredo" not in response.content
    _unchanged(chip, message)


def test_lists_and_the_send_form_show_only_the_own_tenants_objects(tenant_a, intruder, api):
    _, chip, message = tenant_a
    mine = placed_chip(intruder.tenant, alias="Minha loja")
    assert "Filial Secreta" not in intruder.get(reverse("chip_list")).content.decode()
    page = intruder.get(reverse("message_list")).content.decode()
    assert "segredo" not in page and f'value="{chip.pk}"' not in page and "Minha loja" in page
    # Posting tenant A's chip id in the send form is refused and queues nothing.
    response = intruder.post(reverse("message_send"), {"chip": chip.pk, "to": "11988887777", "kind": "text",
                                                        "text": "Oi"})
    assert response.status_code == 400
    client = api(intruder.tenant)
    assert [c["id"] for c in client.get("/api/v1/chips/").json()["results"]] == [mine.pk]
    assert client.get("/api/v1/messages/").json()["results"] == []
    assert client.get(f"/api/v1/messages/?chip={chip.pk}").json()["results"] == []
    _unchanged(chip, message)
