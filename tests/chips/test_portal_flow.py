"""A chip's whole life in the portal, on Docker with the simulator image, a real worker and webhooks."""
import io
import json

from django.urls import reverse
from django_scopes import scopes_disabled
from PIL import Image
from pyzbar.pyzbar import decode

from chips import outgoing
from chips.models import Chip, Message, WebhookDelivery
from waha import manager

from .conftest import DOCKER, chip_row, png_bytes, sim_of, wait_chip, wait_message, wait_until

pytestmark = DOCKER


def messages_of(chip) -> list[Message]:
    with scopes_disabled():
        return list(Message.objects.filter(chip_id=chip.pk).order_by("pk"))


def test_create_scan_send_receive_disconnect_and_delete_in_the_portal(worker, owner_client, receiver):
    tenant = owner_client.tenant
    webhook = outgoing.set_webhook(tenant, receiver.url + "/whago")

    # Create: the chip page shows up at once, the worker prepares the container and session.
    response = owner_client.post(reverse("chip_create"), {"alias": "Vendas"})
    assert response.status_code == 302
    chip = Chip.all_objects.with_scopes_disabled().get(tenant=tenant)
    assert response["Location"] == reverse("chip_detail", args=[chip.pk])
    assert chip.session_name == f"chip_{chip.pk}"
    chip = wait_chip(chip.pk, Chip.Status.SCAN_QR_CODE)
    container = chip.waha_session.container

    # The QR code is served by Django, never from the container's address.
    page = owner_client.get(reverse("chip_detail", args=[chip.pk])).content.decode()
    assert f'src="/chips/{chip.pk}/qr.png?t=' in page
    assert f":{container.port}" not in page and container.api_key not in page
    assert 'hx-trigger="every 2.0s"' in page
    qr = owner_client.get(reverse("chip_qr", args=[chip.pk]))
    assert qr.status_code == 200 and qr["Content-Type"] == "image/png"
    assert qr["Cache-Control"].startswith("max-age=0")
    before = manager.qr(chip.waha_session, "raw")
    value = decode(Image.open(io.BytesIO(qr.content)))[0].data.decode()
    assert value in (before, manager.qr(chip.waha_session, "raw"))  # the code rotates every 20 s

    # The pairing code alternative (htmx form): a bad number is explained, a good one gets a code.
    bad = owner_client.post(reverse("chip_pairing_code", args=[chip.pk]), {"phone": "123"}, HTTP_HX_REQUEST="true")
    assert 'class="errorlist' in bad.content.decode() and "“123”" in bad.content.decode()
    good = owner_client.post(reverse("chip_pairing_code", args=[chip.pk]), {"phone": "(11) 99999-0001"},
                             HTTP_HX_REQUEST="true")
    assert 'id="pairing-code"' in good.content.decode()

    # The phone scans: the session.status webhook turns the chip WORKING with its number.
    sim = sim_of(chip)
    sim.scan(chip.session_name, "5511999990001", "Loja Teste", value=value)
    chip = wait_chip(chip.pk, Chip.Status.WORKING)
    assert (chip.phone, chip.push_name) == ("+5511999990001", "Loja Teste")
    live = owner_client.get(reverse("chip_status", args=[chip.pk]) + "?shown=SCAN_QR_CODE",
                            HTTP_HX_REQUEST="true").content.decode()
    assert "+55 11 99999-0001" in live and "chip-qr" not in live
    assert 'id="chip-pairing" hx-swap-oob="true"' in live  # the pairing form goes away without a reload
    assert owner_client.get(reverse("chip_qr", args=[chip.pk])).status_code == 409
    rows = owner_client.get(reverse("chip_list"), HTTP_HX_REQUEST="true").content.decode()
    assert 'data-status="WORKING"' in rows and "<html" not in rows

    # Send a text to a number typed the Brazilian way (old 8-digit mobile, no +55).
    response = owner_client.post(reverse("message_send"), {
        "chip": chip.pk, "to": "(11) 8888-7777", "kind": "text", "text": "Olá, tudo bem?"})
    assert response.status_code == 302, response.content.decode()
    [text] = messages_of(chip)
    assert text.peer == "+5511988887777" and text.status in (Message.Status.QUEUED, Message.Status.SENT,
                                                             Message.Status.DELIVERED)
    text = wait_message(text.pk, Message.Status.DELIVERED)
    assert text.waha_id.startswith("true_5511988887777@c.us_")
    assert text.sent_at and text.delivered_at and text.attempts == 1

    # An image and a document, as multipart uploads; WAHA receives them as base64.
    image = io.BytesIO(png_bytes())
    image.name = "foto.png"
    response = owner_client.post(reverse("message_send"), {
        "chip": chip.pk, "to": "+55 11 98888-7777", "kind": "image", "text": "Legenda", "file": image})
    assert response.status_code == 302
    document = io.BytesIO(b"%PDF-1.4 tabela de precos")
    document.name = "precos.pdf"
    assert owner_client.post(reverse("message_send"), {
        "chip": chip.pk, "to": "11988887777", "kind": "document", "file": document}).status_code == 302
    _, image_message, document_message = messages_of(chip)
    wait_message(image_message.pk, Message.Status.DELIVERED)
    wait_message(document_message.pk, Message.Status.DELIVERED)
    assert (image_message.media_mimetype, document_message.media_mimetype) == ("image/png", "application/pdf")
    assert owner_client.get(reverse("message_media", args=[image_message.pk])).getvalue() == png_bytes()
    sent = sim.sent(chip.session_name)
    assert [(m["type"], m["body"]) for m in sent] == [
        ("chat", "Olá, tudo bem?"), ("image", "Legenda"), ("document", "")]
    assert {m["chatId"] for m in sent} == {"5511988887777@c.us"}

    # The contact reads: READ, never going back.
    sim.behaviour(read_ms=100)
    response = owner_client.post(reverse("message_send"), {
        "chip": chip.pk, "to": "11988887777", "kind": "text", "text": "Pode ler?"})
    read = wait_message(messages_of(chip)[-1].pk, Message.Status.READ)
    assert read.delivered_at and read.read_at

    # The contact answers: stored once, in the chip's conversations.
    sim.inbound(chip.session_name, "5511988887777", "Quero comprar", push_name="Ana")
    wait_until(lambda: [m for m in messages_of(chip) if m.direction == Message.Direction.IN], message="inbound")
    inbound = [m for m in messages_of(chip) if m.direction == Message.Direction.IN]
    assert [(m.peer, m.body, m.peer_name, m.status) for m in inbound] == [
        ("+5511988887777", "Quero comprar", "Ana", Message.Status.RECEIVED)]
    inbox = owner_client.get(reverse("chip_inbox", args=[chip.pk])).content.decode()
    assert "Ana" in inbox and "Quero comprar" in inbox
    thread = owner_client.get(reverse("conversation", args=[chip.pk, "5511988887777"])).content.decode()
    assert thread.index("Olá, tudo bem?") < thread.index("Quero comprar")

    # The tenant's own webhook got the chip and message events, signed.
    wait_until(lambda: WebhookDelivery.objects.with_scopes_disabled().filter(
        tenant=tenant, event="message.received", status="delivered").exists(), message="webhook deliveries")
    events = [json.loads(r["body"]) for r in receiver.requests]
    assert {"event": "chip.status", "status": "WORKING"} in [
        {"event": e["event"], "status": e["data"].get("status")} for e in events]
    assert any(e["event"] == "message.status" and e["data"]["status"] == "DELIVERED" for e in events)
    assert webhook.secret not in json.dumps(events)

    # Disconnect: logged out and stopped; the session's own later events do not revive it.
    assert owner_client.post(reverse("chip_disconnect", args=[chip.pk])).status_code == 302
    assert chip_row(chip.pk).status == Chip.Status.DISCONNECTED
    wait_until(lambda: sim.sessions()[chip.session_name]["status"] == "STOPPED", message="session stopped")
    assert sim.sessions()[chip.session_name].get("me") is None
    wait_until(lambda: WebhookDelivery.objects.with_scopes_disabled().filter(
        tenant=tenant, event="chip.status", payload__data__status="DISCONNECTED").exists(), message="event")
    assert chip_row(chip.pk).status == Chip.Status.DISCONNECTED

    # Connect again: a new QR code; restart keeps it linkable.
    assert owner_client.post(reverse("chip_connect", args=[chip.pk])).status_code == 302
    wait_chip(chip.pk, Chip.Status.SCAN_QR_CODE)
    assert owner_client.post(reverse("chip_restart", args=[chip.pk])).status_code == 302
    wait_chip(chip.pk, Chip.Status.SCAN_QR_CODE)

    # Delete: the session leaves WAHA, the chip leaves the pages, the messages stay.
    before = len(messages_of(chip))
    confirm = owner_client.get(reverse("chip_delete", args=[chip.pk]))
    assert "Vendas" in confirm.content.decode()
    assert owner_client.post(reverse("chip_delete", args=[chip.pk])).status_code == 302
    assert chip_row(chip.pk).deleted_at is not None
    assert chip.session_name not in sim.sessions()
    assert owner_client.get(reverse("chip_detail", args=[chip.pk])).status_code == 404
    assert f'id="chip-{chip.pk}"' not in owner_client.get(reverse("chip_list")).content.decode()
    assert len(messages_of(chip)) == before
    history = owner_client.get(reverse("message_list")).content.decode()
    assert "Quero comprar" in history


def test_a_failed_session_shows_what_to_do_and_restart_brings_it_back(worker, owner_client):
    from .conftest import working_chip

    chip = working_chip(owner_client.tenant)
    sim_of(chip).call("POST", f"/_sim/sessions/{chip.session_name}/fail", json={"reason": "phone offline"})
    chip = wait_chip(chip.pk, Chip.Status.FAILED)
    page = owner_client.get(reverse("chip_detail", args=[chip.pk])).content.decode()
    assert 'id="state-failed"' in page and reverse("chip_restart", args=[chip.pk]) in page
    owner_client.post(reverse("chip_restart", args=[chip.pk]))
    chip = wait_chip(chip.pk, Chip.Status.WORKING)
    assert chip.last_error == ""
