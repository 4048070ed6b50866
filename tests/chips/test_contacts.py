"""Contacts: the portal form, CSV/XLSX imports with bad rows, consent, and opt-out words from real webhooks."""
import io
from datetime import datetime, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_scopes import scopes_disabled

from chips import contacts
from chips.models import CampaignRecipient, Contact, ContactList, Message

from .conftest import placed_chip, post_event

pytestmark = pytest.mark.django_db


def contact_rows(tenant) -> dict[str, Contact]:
    with scopes_disabled():
        return {c.phone: c for c in Contact.objects.filter(tenant=tenant).prefetch_related("lists")}


def new_list(tenant, name="Clientes") -> ContactList:
    return contacts.create_list(tenant, name)


CSV = """nome;telefone;origem_do_consentimento;data_do_consentimento;Cidade;Plano Atual
Ana Souza;(11) 98765-4321;formulário do site;05/03/2025;Campinas;Ouro
Bruno;11 3333;loja;05/03/2025;Santos;
Carla;+55 21 99876-5432;;;Rio;
Dani;021 99876 5433;balcão;31/02/2025;Niterói;
Ana de novo;+5511987654321;site;06/03/2025;;
Edu;(11) 8765-4322;site;2025-03-07;São Paulo;Prata
Fabi;11 97777-0000;site;{future};;
Gil;11 96666-1111;feira;07/03/2025 14:30;;
"""


def test_csv_import_keeps_good_rows_and_reports_each_bad_one(owner_client):
    tenant = owner_client.tenant
    existing = contacts.save_contact(tenant, phone="11 96666-1111", name="Gil antigo", consent_source="loja",
                                     consent_at=timezone.now() - timedelta(days=30))
    future = (timezone.localdate() + timedelta(days=10)).strftime("%d/%m/%Y")
    upload = SimpleUploadedFile("contatos.csv", CSV.format(future=future).encode("utf-8"), "text/csv")

    response = owner_client.post("/contatos/importar/", {"file": upload, "new_list": "Março"})

    assert response.status_code == 200, response.content.decode()
    report = response.context["report"]
    assert report.created == 2 and report.added_existing == 1
    problems = {p.line: (p.code, p.reason) for p in report.problems}
    assert problems.keys() == {3, 4, 5, 6, 8, 9}
    assert problems[3][0] == "invalid_phone" and "11 3333" in [p.phone for p in report.problems if p.line == 3]
    assert problems[4][0] == "missing_consent"
    assert problems[5][0] == "invalid_date" and "31/02/2025" in problems[5][1]
    assert problems[6][0] == "duplicate" and "2" in problems[6][1]
    assert problems[8][0] == "invalid_date"
    assert problems[9][0] == "existing"
    page = response.content.decode()
    assert 'id="problems"' in page and "Bruno" not in page.split('id="problems"')[0].split("<table")[-1]

    rows = contact_rows(tenant)
    assert set(rows) == {"+5511987654321", "+5511987654322", "+5511966661111"}
    ana = rows["+5511987654321"]
    assert ana.name == "Ana Souza" and ana.consent_source == "formulário do site"
    assert timezone.localtime(ana.consent_at).date() == datetime(2025, 3, 5).date()
    assert ana.fields == {"cidade": "Campinas", "plano_atual": "Ouro"}
    # The 8-digit mobile got its ninth digit; the ISO date was understood.
    assert rows["+5511987654322"].fields == {"cidade": "São Paulo", "plano_atual": "Prata"}
    # The existing contact was added to the list, its data untouched.
    gil = rows["+5511966661111"]
    assert gil.pk == existing.pk and gil.name == "Gil antigo" and gil.consent_source == "loja"
    with scopes_disabled():
        march = ContactList.objects.get(tenant=tenant, name="Março")
        assert set(march.contacts.values_list("phone", flat=True)) == set(rows)


def xlsx_bytes(rows) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_xlsx_import_reads_numbers_and_date_cells_and_reports_bad_rows(owner_client):
    tenant = owner_client.tenant
    target = new_list(tenant, "Feira")
    content = xlsx_bytes([
        ["Name", "Phone", "Consent source", "Consent date", "Loja"],
        ["Helena", 5511955554444, "feira", datetime(2025, 4, 1, 10, 0), "Centro"],
        ["Ivo", "abc", "feira", datetime(2025, 4, 1), "Centro"],
        ["Júlia", 21988887777.0, "feira", None, "Sul"],
        [None, None, None, None, None],
        ["Kaio", "(21) 98888-7777", "feira", "02/04/2025", "Sul"],
        ["Lia", "(31) 97777-6666", "feira", "02/04/2025", "Norte"],
        ["Lia 2", "31 977776666", "feira", "03/04/2025", "Norte"],
    ])
    upload = SimpleUploadedFile("lista.xlsx", content,
                                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")

    response = owner_client.post("/contatos/importar/", {"file": upload, "contact_list": target.pk})

    assert response.status_code == 200
    report = response.context["report"]
    assert report.created == 3 and report.added_existing == 0
    problems = {p.line: (p.code, p.phone) for p in report.problems}
    # Line numbers are the spreadsheet's (the empty row 5 is skipped but still counted); Kaio's number
    # was on a refused row before, so Kaio is not a duplicate.
    assert problems == {3: ("invalid_phone", "abc"), 4: ("missing_consent", "21988887777"),
                        8: ("duplicate", "31 977776666")}
    rows = contact_rows(tenant)
    assert set(rows) == {"+5511955554444", "+5521988887777", "+5531977776666"}
    helena = rows["+5511955554444"]
    assert timezone.localtime(helena.consent_at).replace(tzinfo=None) == datetime(2025, 4, 1, 10, 0)
    assert helena.fields == {"loja": "Centro"} and list(helena.lists.all()) == [target]


def test_an_unusable_file_is_refused_with_the_reason_and_nothing_imported(owner_client):
    tenant = owner_client.tenant
    target = new_list(tenant)
    no_phone = SimpleUploadedFile("x.csv", b"nome,cidade\nAna,Campinas\n", "text/csv")
    response = owner_client.post("/contatos/importar/", {"file": no_phone, "contact_list": target.pk})
    assert response.status_code == 400
    assert "telefone" in response.context["form"].errors["file"][0]
    broken = SimpleUploadedFile("x.xlsx", b"PK\x03\x04 not really a workbook", "application/octet-stream")
    response = owner_client.post("/contatos/importar/", {"file": broken, "contact_list": target.pk})
    assert response.status_code == 400 and response.context["form"].errors["file"]
    assert contact_rows(tenant) == {}


def test_contact_form_normalises_the_number_and_keeps_it_unique_per_tenant(owner_client, make_owner):
    tenant = owner_client.tenant
    group = new_list(tenant)
    response = owner_client.post("/contatos/novo/", {
        "name": "Ana", "phone": "(11) 98765-4321", "consent_source": "site", "consent_at": "2025-03-05T10:00",
        "fields_text": "Cidade = Campinas\nplano=Ouro", "lists": [group.pk],
    })
    assert response.status_code == 302
    ana = contact_rows(tenant)["+5511987654321"]
    assert ana.fields == {"cidade": "Campinas", "plano": "Ouro"} and list(ana.lists.all()) == [group]
    assert ana.can_receive_campaigns

    again = owner_client.post("/contatos/novo/", {"name": "Outra", "phone": "+55 11 98765 4321"})
    assert again.status_code == 400
    assert "+5511987654321" in again.context["form"].non_field_errors()[0]
    bad = owner_client.post("/contatos/novo/", {"name": "X", "phone": "123"})
    assert bad.status_code == 400 and bad.context["form"].non_field_errors()
    half = owner_client.post("/contatos/novo/", {"name": "Y", "phone": "11 97777-1234", "consent_source": "site"})
    assert half.status_code == 400 and half.context["form"].non_field_errors()

    # Without consent a contact may exist, but is never a campaign target.
    owner_client.post("/contatos/novo/", {"name": "Sem", "phone": "11 97777-1234"})
    assert not contact_rows(tenant)["+5511977771234"].can_receive_campaigns

    # The same number in another company is another contact.
    _user, other = make_owner()
    contacts.save_contact(other, phone="11 98765-4321", name="Ana B")
    edit = owner_client.post(f"/contatos/{ana.pk}/", {"name": "Ana Maria", "phone": "11987654321",
                                                      "consent_source": "site", "consent_at": "2025-03-05T10:00"})
    assert edit.status_code == 302 and contact_rows(tenant)["+5511987654321"].name == "Ana Maria"


@pytest.mark.parametrize(("text", "expected"), [
    ("SAIR", True), ("sair", True), ("  Sair! ", True), ("PARAR.", True), ("cancelár", True), ("Stop", True),
    ("quero sair", False), ("sair da lista por favor", False), ("", False), ("sairr", False),
])
def test_opt_out_words_match_the_whole_message_ignoring_case_and_accents(make_owner, text, expected):
    _user, tenant = make_owner()
    assert contacts.is_opt_out(text, contacts.opt_out_words(tenant)) is expected


def test_each_tenant_configures_its_own_opt_out_words(owner_client, make_owner):
    tenant = owner_client.tenant
    response = owner_client.post("/contatos/descadastro/", {"words": "sair, Não quero mais", "reply": "Tchau!"})
    assert response.status_code == 302
    words = contacts.opt_out_words(tenant)
    assert contacts.is_opt_out("nao QUERO mais", words) and not contacts.is_opt_out("stop", words)
    assert contacts.opt_out_reply(tenant) == "Tchau!"
    _user, other = make_owner()
    assert contacts.is_opt_out("stop", contacts.opt_out_words(other))
    assert owner_client.post("/contatos/descadastro/", {"words": " , "}).status_code == 400


def inbound(client, chip, phone: str, body: str, event_id: str):
    payload = {"id": f"false_{phone}@c.us_{event_id}", "timestamp": 1_730_000_000, "from": f"{phone}@c.us",
               "fromMe": False, "to": "5511999990001@c.us", "body": body, "hasMedia": False,
               "_data": {"notifyName": "Cliente"}}
    response = post_event(client, chip, "message", payload, event_id)
    assert response.status_code == 200, response.content
    return response.json()["status"]


def confirmations(tenant, phone: str) -> list[Message]:
    with scopes_disabled():
        return list(Message.objects.filter(tenant=tenant, direction=Message.Direction.OUT, peer=phone,
                                           source="opt-out"))


def test_an_opt_out_word_unsubscribes_the_contact_and_sends_one_confirmation(client, make_owner):
    _user, tenant = make_owner()
    chip = placed_chip(tenant)
    ana = contacts.save_contact(tenant, phone="11 98888-7777", name="Ana", consent_source="site",
                                consent_at=timezone.now() - timedelta(days=3))

    assert inbound(client, chip, "5511988887777", "Oi, tudo bem?", "evt_1") == "stored"
    assert contact_rows(tenant)["+5511988887777"].unsubscribed_at is None

    assert inbound(client, chip, "5511988887777", "Sair", "evt_2") == "stored"
    ana.refresh_from_db()
    assert ana.is_unsubscribed and ana.unsubscribed_chip_id == chip.pk and not ana.can_receive_campaigns
    sent = confirmations(tenant, "+5511988887777")
    assert len(sent) == 1 and sent[0].chip_id == chip.pk and "não receberá" in sent[0].body.lower()
    assert sent[0].status == Message.Status.QUEUED

    # WAHA retrying the same event, and the contact insisting: still one confirmation.
    assert inbound(client, chip, "5511988887777", "Sair", "evt_2") == "duplicate"
    assert inbound(client, chip, "5511988887777", "PARAR", "evt_3") == "stored"
    assert len(confirmations(tenant, "+5511988887777")) == 1
    first = ana.unsubscribed_at
    ana.refresh_from_db()
    assert ana.unsubscribed_at == first

    # A number that is not a contact yet is remembered as unsubscribed.
    assert inbound(client, chip, "5511977776666", "stop", "evt_4") == "stored"
    stranger = contact_rows(tenant)["+5511977776666"]
    assert stranger.is_unsubscribed and not stranger.has_consent
    assert len(confirmations(tenant, "+5511977776666")) == 1


def test_an_answer_marks_the_last_campaign_message_as_replied(client, make_owner):
    from chips.models import Campaign

    _user, tenant = make_owner()
    chip = placed_chip(tenant)
    contact = contacts.save_contact(tenant, phone="11 98888-7777", name="Ana", consent_source="site",
                                    consent_at=timezone.now() - timedelta(days=3))
    with scopes_disabled():
        older, newer = (Campaign.objects.create(tenant=tenant, name=name, template="Oi",
                                                status=Campaign.Status.COMPLETED) for name in ("A", "B"))
        now = timezone.now()
        first = CampaignRecipient.objects.create(tenant=tenant, campaign=older, contact=contact, phone=contact.phone,
                                                 status=CampaignRecipient.Status.SENT, sent_at=now - timedelta(hours=5))
        last = CampaignRecipient.objects.create(tenant=tenant, campaign=newer, contact=contact, phone=contact.phone,
                                                status=CampaignRecipient.Status.SENT, sent_at=now - timedelta(hours=1))

    inbound(client, chip, "5511988887777", "Quero saber mais!", "evt_r1")
    first.refresh_from_db()
    last.refresh_from_db()
    assert last.replied_at is not None and first.replied_at is None
    inbound(client, chip, "5511988887777", "Cancelar", "evt_r2")
    last.refresh_from_db()
    assert last.opted_out_at is not None
