"""One inbox for all of a tenant's chips: conversations newest first with unread counts, a chip filter, names
from WhatsApp's push name, a thread that is read when opened, replies through the send form's path, files
shown inline, a bounded number of queries, and nothing of another tenant."""
import itertools
import re

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_scopes import scopes_disabled

from chips import contacts, sending
from chips.models import Chip, Contact, Message

from .conftest import placed_chip, post_event

pytestmark = pytest.mark.django_db

ANA, BETO, CAIO = "5511988880001", "5511988880002", "5511988880003"
_events = itertools.count(1)


def inbound(chip, phone: str, body: str, name: str = "") -> None:
    """A message the contact sends to the chip, through WAHA's signed webhook (as in production)."""
    n = next(_events)
    payload = {"id": f"false_{phone}@c.us_IN{n}", "timestamp": 1_730_000_000 + n, "from": f"{phone}@c.us",
               "fromMe": False, "to": f"{chip.phone[1:]}@c.us", "body": body, "hasMedia": False,
               "_data": {"notifyName": name} if name else {}}
    response = post_event(Client(), chip, "message", payload, f"evt_inbox_{n}")
    assert response.status_code == 200, response.content


def rows(page: str) -> list[tuple[str, str]]:
    """(chip id, phone) of the inbox's conversations, top to bottom."""
    return re.findall(r'class="inbox-item[^"]*" data-chip="(\d+)" data-peer="\+(\d+)"', page)


def unread(page: str) -> dict[str, int]:
    """The unread count shown on each conversation (by phone)."""
    items = re.findall(r'data-peer="\+(\d+)">(.*?)</li>', page, re.S)
    counts = {}
    for phone, item in items:
        found = re.search(r'class="unread-count"[^>]*>(\d+)<', item)
        counts[phone] = int(found.group(1)) if found else 0
    return counts


def menu_total(page: str) -> int:
    found = re.search(r'id="unread-total"[^>]*>(\d+)<', page)
    return int(found.group(1)) if found else 0


@pytest.fixture
def shop(owner_client):
    """A company with two connected chips: Ana wrote to the first twice, Beto to the second, then the company
    wrote to Caio through the first (so Caio's conversation is the newest)."""
    tenant = owner_client.tenant
    loja = placed_chip(tenant, alias="Loja do Centro", phone="+5511999990001")
    balcao = placed_chip(tenant, alias="Balcão da Doceria Central", phone="+5511999990002")
    inbound(loja, ANA, "Oi, vocês entregam?", name="Ana Paula")
    inbound(loja, ANA, "No bairro Jardim?", name="Ana Paula")
    inbound(balcao, BETO, "Tem bolo de cenoura?", name="Beto")
    sending.send_message(tenant, loja, f"+{CAIO}", text="Seu pedido saiu para entrega")
    return owner_client, loja, balcao


def test_the_inbox_lists_every_chips_conversations_newest_first_with_unread_counts(shop):
    client, loja, balcao = shop
    response = client.get(reverse("inbox"))
    assert response.status_code == 200
    page = response.content.decode()
    assert rows(page) == [(str(loja.pk), CAIO), (str(balcao.pk), BETO), (str(loja.pk), ANA)]
    assert unread(page) == {CAIO: 0, BETO: 1, ANA: 2}
    assert menu_total(page) == 3
    # The last message is previewed, an outgoing one marked as ours; each row names its chip.
    assert "Seu pedido saiu para entrega" in page and "Tem bolo de cenoura?" in page and "No bairro Jardim?" in page
    assert "Oi, vocês entregam?" not in page
    assert "Loja do Centro" in page and "Balcão da Doceria Central" in page

    # A new message moves its conversation to the top.
    inbound(balcao, ANA, "Pelo outro número também", name="Ana Paula")
    assert rows(client.get(reverse("inbox")).content.decode())[0] == (str(balcao.pk), ANA)


def test_opening_a_conversation_reads_it(shop):
    client, loja, _balcao = shop
    thread = client.get(reverse("conversation", args=[loja.pk, ANA]))
    assert thread.status_code == 200
    body = thread.content.decode()
    assert body.index("Oi, vocês entregam?") < body.index("No bairro Jardim?")
    page = client.get(reverse("inbox")).content.decode()
    assert unread(page) == {CAIO: 0, BETO: 1, ANA: 0}
    assert menu_total(page) == 1
    with scopes_disabled():
        assert not Message.objects.filter(chip=loja, peer=f"+{ANA}", read_at__isnull=True).exists()
    # A message arriving later is unread again until the thread is seen.
    inbound(loja, ANA, "Oi?", name="Ana Paula")
    assert unread(client.get(reverse("inbox")).content.decode())[ANA] == 1
    client.get(reverse("conversation", args=[loja.pk, ANA]), HTTP_HX_REQUEST="true")  # the thread's live refresh
    assert unread(client.get(reverse("inbox")).content.decode())[ANA] == 0


def test_the_chip_filter_and_the_former_per_chip_address(shop):
    client, loja, balcao = shop
    page = client.get(reverse("inbox"), {"chip": balcao.pk}).content.decode()
    assert rows(page) == [(str(balcao.pk), BETO)]
    # The select shows every chip's whole name, the chosen one selected.
    assert f'<option value="{balcao.pk}" selected>Balcão da Doceria Central<' in page
    assert f'<option value="{loja.pk}" >Loja do Centro<' in page
    assert rows(client.get(reverse("chip_inbox", args=[loja.pk])).content.decode()) == [
        (str(loja.pk), CAIO), (str(loja.pk), ANA)]
    # The live refresh keeps the filter.
    partial = client.get(reverse("inbox"), {"chip": balcao.pk}, HTTP_HX_REQUEST="true").content.decode()
    assert rows(partial) == [(str(balcao.pk), BETO)] and "<html" not in partial
    assert f'hx-get="/conversas/?chip={balcao.pk}&amp;page=1"' in partial
    # An unknown chip shows the whole inbox; the former conversation address shows the thread.
    assert client.get(reverse("inbox"), {"chip": 999999}).url == reverse("inbox")
    assert client.get(reverse("inbox"), {"chip": "x"}).url == reverse("inbox")
    old = client.get(f"/chips/{loja.pk}/conversas/{ANA}/")
    assert old.status_code == 200 and "No bairro Jardim?" in old.content.decode()
    # A deleted chip's conversations leave the inbox.
    with scopes_disabled():
        Chip.all_objects.filter(pk=balcao.pk).update(deleted_at=loja.created_at)
    assert rows(client.get(reverse("inbox")).content.decode()) == [(str(loja.pk), CAIO), (str(loja.pk), ANA)]


def test_names_come_from_the_contact_else_from_the_whatsapp_push_name(shop):
    client, loja, _balcao = shop
    tenant = client.tenant
    page = client.get(reverse("inbox")).content.decode()
    assert "Ana Paula" in page and "Beto" in page
    assert "<h1>Ana Paula</h1>" in client.get(reverse("conversation", args=[loja.pk, ANA])).content.decode()
    # A contact's own name wins over the push name.
    contacts.save_contact(tenant, phone=f"+{BETO}", name="Roberto Souza")
    page = client.get(reverse("inbox")).content.decode()
    assert "Roberto Souza" in page and ">Beto<" not in page
    # A contact created from an inbound message (an opt-out) is named with the push name it sent.
    inbound(loja, "5511977776666", "SAIR", name="Dona Maria")
    with scopes_disabled():
        contact = Contact.objects.get(tenant=tenant, phone="+5511977776666")
    assert contact.name == "Dona Maria" and contact.is_unsubscribed
    assert "Dona Maria" in client.get(reverse("inbox")).content.decode()


def test_a_reply_goes_through_the_send_path_to_the_conversations_chip_and_number(shop):
    client, loja, balcao = shop
    url = reverse("conversation", args=[balcao.pk, BETO])
    response = client.post(url, {"kind": "text", "text": "Tem sim, até as 18h!",
                                 "chip": loja.pk, "to": "11900000000"})  # the thread's chip and number win
    assert response.status_code == 302 and response.url == url
    with scopes_disabled():
        reply = Message.objects.filter(tenant=client.tenant, direction=Message.Direction.OUT).order_by("-pk").first()
    assert (reply.chip_id, reply.peer, reply.body, reply.status, reply.source) == (
        balcao.pk, f"+{BETO}", "Tem sim, até as 18h!", Message.Status.QUEUED, "portal")
    page = client.get(url).content.decode()
    assert "Tem sim, até as 18h!" in page
    assert rows(client.get(reverse("inbox")).content.decode())[0] == (str(balcao.pk), BETO)

    # A refused reply is explained on the thread and queues nothing.
    with scopes_disabled():
        before = Message.objects.count()
    response = client.post(url, {"kind": "text", "text": ""}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400 and "Write the message text." in response.content.decode()
    with scopes_disabled():
        Chip.objects.filter(pk=balcao.pk).update(status=Chip.Status.DISCONNECTED)
    response = client.post(url, {"kind": "text", "text": "Oi"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400 and "is not connected" in response.content.decode()
    with scopes_disabled():
        assert Message.objects.count() == before


def test_files_are_shown_in_the_thread(shop):
    client, loja, _balcao = shop
    files = [("image", "foto.png", "image/png"), ("document", "audio.ogg", "audio/ogg"),
             ("document", "video.mp4", "video/mp4"), ("document", "boleto.pdf", "application/pdf")]
    made = []
    with scopes_disabled():
        for kind, name, mimetype in files:
            message = Message(tenant=client.tenant, chip=loja, peer=f"+{ANA}", kind=kind, body="",
                              media_name=name, media_mimetype=mimetype, status=Message.Status.DELIVERED)
            message.media.save(name, ContentFile(b"\x00data"), save=True)
            made.append(message)
    page = client.get(reverse("conversation", args=[loja.pk, ANA])).content.decode()
    image, audio, video, pdf = (reverse("message_media", args=[m.pk]) for m in made)
    assert f'<img src="{image}"' in page
    assert f'<audio class="media" controls preload="none" src="{audio}">' in page
    assert f'<video class="media" controls preload="metadata" src="{video}">' in page
    assert f'href="{pdf}" download>' in page
    assert client.get(audio)["Content-Disposition"].startswith("inline")
    assert client.get(pdf)["Content-Disposition"].startswith("attachment")


def test_the_inbox_takes_the_same_number_of_queries_for_3_or_40_conversations(owner_client):
    tenant = owner_client.tenant
    chips = [placed_chip(tenant, alias=f"Chip {n}", phone=f"+55119999900{n:02d}") for n in range(2)]

    def converse(first: int, last: int) -> None:
        with scopes_disabled():
            for n in range(first, last):
                chip = chips[n % 2]
                Message.objects.create(tenant=tenant, chip=chip, direction=Message.Direction.IN,
                                       peer=f"+55119777{n:05d}", peer_name=f"Cliente {n}", body="Oi",
                                       status=Message.Status.RECEIVED)
                Message.objects.create(tenant=tenant, chip=chip, peer=f"+55119777{n:05d}", body="Olá!",
                                       status=Message.Status.SENT)
        contacts.save_contact(tenant, phone=f"+55119777{first:05d}", name=f"Contato {first}")

    def queries() -> tuple[int, str]:
        owner_client.get(reverse("inbox"))  # (the session and the tenant are cached after the first request)
        with CaptureQueriesContext(connection) as captured:
            response = owner_client.get(reverse("inbox"))
        assert response.status_code == 200
        return len(captured), response.content.decode()

    converse(0, 3)
    few, page = queries()
    assert len(rows(page)) == 3
    converse(3, 40)
    many, page = queries()
    assert len(rows(page)) == 40 and "Contato 3" in page and "Cliente 39" in page
    assert many == few, (few, many)
    assert few <= 12
    # Pages of 50: the 60th conversation is on page 2, in the same number of queries.
    converse(40, 60)
    second = owner_client.get(reverse("inbox"), {"page": 2}).content.decode()
    assert len(rows(second)) == 10


def test_another_tenant_can_neither_see_nor_open_nor_answer_a_conversation(shop, make_owner):
    _client, loja, balcao = shop
    user, other = make_owner()
    intruder = Client()
    intruder.force_login(user)
    placed_chip(other, alias="Minha loja", phone="+5511999990009")
    page = intruder.get(reverse("inbox")).content.decode()
    assert rows(page) == [] and "Ana Paula" not in page and menu_total(page) == 0
    assert intruder.get(reverse("inbox"), {"chip": loja.pk}).url == reverse("inbox")
    assert intruder.get(reverse("chip_inbox", args=[loja.pk])).status_code == 404
    thread = intruder.get(reverse("conversation", args=[loja.pk, ANA]))
    assert thread.status_code == 404 and "entregam" not in thread.content.decode()
    with scopes_disabled():
        before = Message.objects.count()
    for chip, phone in ((loja, ANA), (balcao, BETO)):
        response = intruder.post(reverse("conversation", args=[chip.pk, phone]),
                                 {"kind": "text", "text": "Roubado"})
        assert response.status_code == 404
    with scopes_disabled():
        assert Message.objects.count() == before
        assert not Message.objects.filter(read_at__isnull=False, direction=Message.Direction.IN).exists()


def test_the_main_menu_has_the_inbox_with_its_unread_total_and_the_contacts(shop):
    client, _loja, _balcao = shop
    page = client.get(reverse("inbox"), HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    nav = page[page.index('<nav class="mainnav"'):page.index("</nav>")]
    assert re.search(r'<a href="/conversas/" id="nav-inbox" aria-current="page">Conversas <span class="nav-count"'
                     r' id="unread-total" title="3 mensagens não lidas">3</span></a>', nav), nav
    assert '<a href="/contatos/" >Contatos</a>' in nav
    nav = client.get(reverse("contact_list")).content.decode()
    assert '<a href="/contatos/" aria-current="page">Contatos</a>' in nav
    assert '<a href="/campanhas/" >Campanhas</a>' in nav
    client.cookies["django_language"] = "en"
    english = client.get(reverse("inbox")).content.decode()
    assert ">Inbox <span" in english and "<h1>Inbox</h1>" in english and "3 unread messages" in english
