"""Campaign building: templates and their variables, the builder with its live preview, plan limits,
status transitions and the recipients a campaign starts with (no sending here: see test_campaign_dispatch)."""
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from django.utils.translation import gettext as _
from django_scopes import scopes_disabled

from chips import campaigns, contacts, dispatch
from chips.models import Campaign, CampaignRecipient, Contact

from .conftest import placed_chip, set_plan

pytestmark = pytest.mark.django_db

R = CampaignRecipient.Status
ALL_DAY = {"window_days": list(range(7)), "window_start": time(0, 0), "window_end": time(23, 59)}


def consenting(tenant, phone, name="", lists=(), **fields):
    return contacts.save_contact(tenant, phone=phone, name=name, consent_source="site",
                                 consent_at=timezone.now() - timedelta(days=1), fields=fields, lists=list(lists))


def draft(tenant, lists, chips, template="Olá {primeiro_nome}!", pace=10, **extra):
    values = {**ALL_DAY, **extra}
    return campaigns.save_campaign(tenant, name="Promo", template=template, lists=lists, chips=chips,
                                   pace_per_minute=pace, **values)


# --- templates -------------------------------------------------------------------------------


def test_render_fills_builtin_and_custom_variables_and_keeps_literal_braces():
    text = campaigns.render("Oi {primeiro_nome}! {Nome}, de {Cidade}: {{cupom}} {telefone} {plano}",
                            "Ana Maria Souza", "+5511987654321", {"cidade": "Campinas"})
    assert text == "Oi Ana! Ana Maria Souza, de Campinas: {cupom} +55 11 98765-4321"


def test_unknown_variables_are_named_once():
    template = "Oi {nome}, {cidade} {cidade} {cupom} {Data de Nascimento} {}"
    assert campaigns.unknown_variables(template, {"data_de_nascimento"}) == ["cidade", "cupom", ""]
    assert campaigns.unknown_variables("{nome} {primeiro_nome} {telefone}", set()) == []


def test_builder_refuses_unknown_variables_and_saves_a_valid_draft(owner_client):
    tenant = owner_client.tenant
    chip = placed_chip(tenant)
    clients = contacts.create_list(tenant, "Clientes")
    consenting(tenant, "11 98888-0001", "Ana Souza", [clients], cidade="Campinas")
    form = {"name": "Black Friday", "template": "Oi {nome}, cupom {cupom}", "lists": [clients.pk], "chips": [chip.pk],
            "window_days": ["0", "1", "2"], "window_start": "09:00", "window_end": "18:00", "pace_per_minute": "10"}

    refused = owner_client.post("/campanhas/nova/", form)
    assert refused.status_code == 400
    error = refused.context["form"].non_field_errors()[0]
    assert "{cupom}" in error and "{cidade}" in error  # what is wrong, and what may be used
    with scopes_disabled():
        assert not Campaign.objects.filter(tenant=tenant).exists()

    form["template"] = "Oi {primeiro_nome}, a loja de {cidade} tem ofertas!"
    saved = owner_client.post("/campanhas/nova/", form)
    assert saved.status_code == 302
    with scopes_disabled():
        campaign = Campaign.objects.get(tenant=tenant)
        assert list(campaign.chips.all()) == [chip] and list(campaign.lists.all()) == [clients]
    assert campaign.status == Campaign.Status.DRAFT and campaign.window_days == [0, 1, 2]
    page = owner_client.get(saved["Location"])
    assert page.status_code == 200
    assert "Oi Ana, a loja de Campinas tem ofertas!" in page.content.decode()

    # Editing keeps the same rules.
    form["template"] = "{sobrenome}"
    assert owner_client.post(f"/campanhas/{campaign.pk}/editar/", form).status_code == 400


def test_preview_renders_the_message_for_a_contact_of_the_chosen_lists(owner_client):
    tenant = owner_client.tenant
    vip, other = contacts.create_list(tenant, "VIP"), contacts.create_list(tenant, "Outros")
    consenting(tenant, "11 98888-0002", "Bruno Lima", [vip], cidade="Santos")
    consenting(tenant, "11 98888-0003", "Carla Dias", [other], cidade="Rio")
    contacts.save_contact(tenant, phone="11 98888-0004", name="Sem Consentimento", lists=[vip])

    response = owner_client.post("/campanhas/previa/", {"template": "Oi {primeiro_nome} de {cidade}",
                                                       "lists": [vip.pk]}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Oi Bruno de Santos" in body and 'id="preview-errors"' not in body
    bad = owner_client.post("/campanhas/previa/", {"template": "Oi {apelido}", "lists": [other.pk]},
                            HTTP_HX_REQUEST="true").content.decode()
    assert 'id="preview-errors"' in bad and "{apelido}" in bad


def test_pace_is_bounded_by_the_plan(make_owner):
    _user, tenant = make_owner()
    chip = placed_chip(tenant)
    group = contacts.create_list(tenant, "G")
    assert campaigns.pace_limit(tenant) == 20  # FREE
    with pytest.raises(campaigns.CampaignError):
        draft(tenant, [group], [chip], pace=30)
    with pytest.raises(campaigns.CampaignError):
        draft(tenant, [group], [chip], pace=0)
    set_plan(tenant, "BUSINESS")
    assert draft(tenant, [group], [chip], pace=60).pace_per_minute == 60


def test_transitions_are_guarded_on_the_model(make_owner):
    _user, tenant = make_owner()
    with scopes_disabled():
        campaign = Campaign.objects.create(tenant=tenant, name="C", template="Oi")
    assert campaign.can_become(Campaign.Status.RUNNING) and not campaign.can_become(Campaign.Status.PAUSED)
    assert not campaign.transition(Campaign.Status.COMPLETED)
    with scopes_disabled():
        stale = Campaign.objects.get(pk=campaign.pk)
    assert campaign.transition(Campaign.Status.RUNNING) and campaign.started_at
    assert campaign.transition(Campaign.Status.PAUSED, "out of credits")
    # Another process still holding the old status cannot move it from there.
    assert not stale.transition(Campaign.Status.SCHEDULED)
    assert campaign.transition(Campaign.Status.CANCELED)
    with scopes_disabled():
        campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELED and campaign.finished_at
    for status in Campaign.Status.values:
        assert not campaign.transition(status)


def test_start_creates_recipients_and_skips_those_without_consent_or_opted_out(make_owner):
    _user, tenant = make_owner()
    chip = placed_chip(tenant)
    a, b = contacts.create_list(tenant, "A"), contacts.create_list(tenant, "B")
    consenting(tenant, "11 98888-0001", "Ana", [a, b])  # in both lists: one recipient
    consenting(tenant, "11 98888-0002", "Bia", [b])
    contacts.save_contact(tenant, phone="11 98888-0003", name="Caio", lists=[a])
    gone = consenting(tenant, "11 98888-0004", "Duda", [a])
    contacts.unsubscribe(tenant, gone.phone)
    consenting(tenant, "11 98888-0005", "Fora")  # in no list

    campaign = campaigns.start(draft(tenant, [a, b], [chip]))
    assert campaign.status == Campaign.Status.RUNNING and campaign.started_at
    with scopes_disabled():
        rows = {r.phone: r for r in CampaignRecipient.objects.filter(campaign=campaign)}
    assert set(rows) == {"+5511988880001", "+5511988880002", "+5511988880003", "+5511988880004"}
    assert rows["+5511988880001"].status == rows["+5511988880002"].status == R.PENDING
    assert rows["+5511988880003"].status == R.SKIPPED and rows["+5511988880003"].error == _("no recorded consent")
    assert rows["+5511988880004"].status == R.SKIPPED
    assert rows["+5511988880004"].error.startswith(_("opted out on %(date)s").split("%")[0])
    progress = campaigns.progress(campaign)
    assert (progress["total"], progress["pending"], progress["skipped"], progress["percent"]) == (4, 2, 2, 50)
    with pytest.raises(campaigns.CampaignError):
        campaigns.start(campaign)


def test_plan_limits_on_recipients_and_on_campaigns_running_at_once(make_owner):
    _user, tenant = make_owner()
    chip = placed_chip(tenant)
    big = contacts.create_list(tenant, "Grande")
    with scopes_disabled():
        made = Contact.objects.bulk_create(
            Contact(tenant=tenant, phone=f"+55119{70000000 + n}", consent_source="site", consent_at=timezone.now())
            for n in range(501)
        )
        big.contacts.add(*made)
    with pytest.raises(campaigns.CampaignError, match="500"):
        campaigns.start(draft(tenant, [big], [chip]))
    small = contacts.create_list(tenant, "Pequena")
    consenting(tenant, "11 98888-0001", "Ana", [small])
    first = campaigns.start(draft(tenant, [small], [chip]))
    second = draft(tenant, [small], [chip])
    with pytest.raises(campaigns.CampaignError):
        campaigns.start(second)  # FREE: one campaign at a time
    campaigns.pause(first)
    assert campaigns.start(second).status == Campaign.Status.RUNNING
    with pytest.raises(campaigns.CampaignError):
        campaigns.resume(first)
    campaigns.cancel(second)
    assert campaigns.resume(first).status == Campaign.Status.RUNNING


def test_scheduled_campaigns_start_when_due_through_the_kick(make_owner):
    _user, tenant = make_owner()
    chip = placed_chip(tenant)
    group = contacts.create_list(tenant, "G")
    consenting(tenant, "11 98888-0001", "Ana", [group])
    later = draft(tenant, [group], [chip], start_at=timezone.now() + timedelta(hours=2))
    assert campaigns.start(later).status == Campaign.Status.SCHEDULED
    assert dispatch.kick()["started"] == 0
    with scopes_disabled():
        Campaign.objects.filter(pk=later.pk).update(start_at=timezone.now() - timedelta(seconds=1))
    assert dispatch.kick()["started"] == 1
    with scopes_disabled():
        later.refresh_from_db()
    assert later.status == Campaign.Status.RUNNING
    with scopes_disabled():
        assert CampaignRecipient.objects.filter(campaign=later, status=R.PENDING).count() == 1


def test_cancel_skips_every_recipient_not_sent_and_unschedule_returns_to_draft(make_owner):
    _user, tenant = make_owner()
    chip = placed_chip(tenant)
    group = contacts.create_list(tenant, "G")
    for n in range(3):
        consenting(tenant, f"11 98888-000{n}", f"C{n}", [group])
    scheduled = campaigns.start(draft(tenant, [group], [chip], start_at=timezone.now() + timedelta(days=1)))
    campaigns.unschedule(scheduled)
    assert scheduled.status == Campaign.Status.DRAFT
    # Started again it waits for its date; "start now" on a scheduled campaign does not.
    assert campaigns.start(scheduled).status == Campaign.Status.SCHEDULED
    running = campaigns.start(scheduled)
    assert running.status == Campaign.Status.RUNNING
    campaigns.cancel(running)
    with scopes_disabled():
        statuses = set(CampaignRecipient.objects.filter(campaign=running).values_list("status", "error"))
    assert statuses == {(R.SKIPPED, _("campaign canceled"))}
    assert campaigns.progress(running)["percent"] == 100
    with pytest.raises(campaigns.CampaignError):
        campaigns.pause(running)


def test_send_window_days_and_hours_in_sao_paulo_time():
    zone = ZoneInfo("America/Sao_Paulo")
    campaign = Campaign(window_days=[0, 1, 2, 3, 4], window_start=time(9, 0), window_end=time(18, 0))
    monday_10 = datetime(2025, 3, 3, 10, 0, tzinfo=zone)
    assert campaign.in_window(monday_10)
    assert campaign.in_window(datetime(2025, 3, 3, 18, 0, 59, tzinfo=zone))
    assert not campaign.in_window(datetime(2025, 3, 3, 18, 1, tzinfo=zone))
    assert not campaign.in_window(datetime(2025, 3, 3, 8, 59, tzinfo=zone))
    assert not campaign.in_window(datetime(2025, 3, 8, 10, 0, tzinfo=zone))  # Saturday
    # 12:30 UTC is 09:30 in São Paulo: inside; 11:30 UTC (08:30 there) is not.
    assert campaign.in_window(datetime(2025, 3, 3, 12, 30, tzinfo=ZoneInfo("UTC")))
    assert not campaign.in_window(datetime(2025, 3, 3, 11, 30, tzinfo=ZoneInfo("UTC")))


def test_the_dashboard_summarises_campaigns(owner_client):
    tenant = owner_client.tenant
    chip = placed_chip(tenant)
    group = contacts.create_list(tenant, "G")
    consenting(tenant, "11 98888-0001", "Ana", [group])
    campaign = campaigns.start(draft(tenant, [group], [chip]))
    page = owner_client.get("/painel/").content.decode()
    assert 'id="campaign-summary"' in page and f"/campanhas/{campaign.pk}/" in page and "0% (0/1)" in page


def test_operators_see_campaigns_and_contacts_read_only_in_the_admin(client, operator, make_owner):
    _user, tenant = make_owner()
    chip = placed_chip(tenant)
    group = contacts.create_list(tenant, "G")
    contact = consenting(tenant, "11 98888-0001", "Ana", [group])
    campaign = draft(tenant, [group], [chip])
    client.force_login(operator)
    for url in ("/admin/chips/campaign/", f"/admin/chips/campaign/{campaign.pk}/change/", "/admin/chips/contact/",
                f"/admin/chips/contact/{contact.pk}/change/"):
        response = client.get(url)
        assert response.status_code == 200, url
    assert "Promo" in client.get("/admin/chips/campaign/").content.decode()
    assert client.post(f"/admin/chips/campaign/{campaign.pk}/delete/", {"post": "yes"}).status_code == 403


def test_the_recipient_table_refreshes_alone_through_htmx(owner_client):
    tenant = owner_client.tenant
    chip = placed_chip(tenant)
    group = contacts.create_list(tenant, "G")
    consenting(tenant, "11 98888-0001", "Ana Filtro", [group])
    contacts.save_contact(tenant, phone="11 98888-0002", name="Bia Sem", lists=[group])
    campaign = campaigns.start(draft(tenant, [group], [chip]))
    response = owner_client.get(f"/campanhas/{campaign.pk}/", {"outcome": "skipped"}, HTTP_HX_REQUEST="true",
                                HTTP_HX_TARGET="recipient-rows")
    body = response.content.decode()
    assert body.startswith('<tbody id="recipient-rows"') and "Bia Sem" in body and "Ana Filtro" not in body
    assert "<html" not in body
