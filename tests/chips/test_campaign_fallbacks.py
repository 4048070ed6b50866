"""Campaigns never send a message with a hole: fallbacks per variable ({cidade|nossa loja}), the builder
lists who lacks which field, a start with unfilled variables is refused with that list, and the sender
skips a contact that lost a value after the start."""
import uuid
from datetime import time, timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone
from django.utils.translation import gettext as _
from django_scopes import scopes_disabled

from chips import campaigns, contacts, dispatch
from chips.models import Campaign, CampaignRecipient, Contact

from .conftest import placed_chip

pytestmark = pytest.mark.django_db

R = CampaignRecipient.Status
ALL_DAY = {"window_days": list(range(7)), "window_start": time(0, 0), "window_end": time(23, 59)}
STORE = "Chegou na loja de {cidade}. Responda SAIR"


def consenting(tenant, phone, name="", lists=(), **fields):
    return contacts.save_contact(tenant, phone=phone, name=name, consent_source="site",
                                 consent_at=timezone.now() - timedelta(days=1), fields=fields, lists=list(lists))


def draft(tenant, lists, chips, template):
    return campaigns.save_campaign(tenant, name="Loja", template=template, lists=lists, chips=chips,
                                   pace_per_minute=10, **ALL_DAY)


def two_lists(tenant):
    """The walkthrough's case: one list with the city, one without."""
    with_city, without = contacts.create_list(tenant, "Com cidade"), contacts.create_list(tenant, "Sem cidade")
    consenting(tenant, "11 98888-0001", "Ana Souza", [with_city], cidade="Campinas")
    for n in range(2, 9):
        consenting(tenant, f"11 98888-000{n}", f"Cliente {n}", [without], bairro="Centro")
    consenting(tenant, "11 98888-0009", "", [without], cidade="  ")  # blank value counts as missing
    contacts.save_contact(tenant, phone="11 98888-0010", name="Sem Consentimento", lists=[without])  # never sent
    return with_city, without


def test_render_uses_the_fallback_only_when_the_value_is_empty():
    template = "Oi {primeiro_nome|cliente}, loja de {cidade|nossa loja} {telefone} {{literal|x}}"
    assert campaigns.render(template, "Ana Souza", "+5511987654321", {"cidade": "Campinas"}) == (
        "Oi Ana, loja de Campinas +55 11 98765-4321 {literal|x}")
    assert campaigns.render(template, "", "+5511987654321", {"cidade": "  "}) == (
        "Oi cliente, loja de nossa loja +55 11 98765-4321 {literal|x}")
    assert campaigns.template_variables("{cidade|nossa loja} {Nome| amigo }") == ["cidade", "Nome"]
    assert campaigns.unknown_variables("{cupom|BEMVINDO}", set()) == ["cupom"]  # a typo stays an error


def test_holes_name_the_variables_without_fallback_that_would_be_empty():
    template = "{nome}, {cidade}, {bairro|centro}, {telefone}, {Cidade}"
    assert campaigns.required_variables(template) == ["nome", "cidade"]
    assert campaigns.holes(template, "", {"bairro": ""}) == ["nome", "cidade"]
    assert campaigns.holes(template, "Ana", {"cidade": "Rio"}) == []


def test_unfilled_counts_the_recipients_who_lack_each_variable_with_a_sample(make_owner):
    _user, tenant = make_owner()
    with_city, without = two_lists(tenant)
    missing = campaigns.unfilled(tenant, "{primeiro_nome}, " + STORE, [with_city, without])
    by_variable = {item.variable: item for item in missing}
    assert set(by_variable) == {"primeiro_nome", "cidade"}
    assert by_variable["cidade"].count == 8  # seven without the field, one blank; not the one without consent
    assert [row["label"] for row in by_variable["cidade"].sample] == [
        "Cliente 2", "Cliente 3", "Cliente 4", "Cliente 5", "Cliente 6"]
    assert by_variable["primeiro_nome"].count == 1
    assert by_variable["primeiro_nome"].sample[0]["label"] == "+55 11 98888-0009"
    assert campaigns.unfilled(tenant, STORE, [with_city]) == []
    assert campaigns.unfilled(tenant, "Chegou na loja de {cidade|nossa loja}", [with_city, without]) == []


def test_start_with_unfilled_variables_is_refused_with_the_list_and_a_fallback_lets_it_start(make_owner):
    _user, tenant = make_owner()
    chip = placed_chip(tenant)
    with_city, without = two_lists(tenant)
    campaign = draft(tenant, [with_city, without], [chip], STORE)  # a draft may be saved

    with pytest.raises(campaigns.CampaignError) as refused:
        campaigns.start(campaign)
    assert "{cidade}: 8" in refused.value.message and "Cliente 2" in refused.value.message
    assert "{cidade|" in refused.value.message  # says how to fix it
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    with scopes_disabled():
        assert not CampaignRecipient.objects.filter(campaign=campaign).exists()

    campaign = draft(tenant, [with_city, without], [chip], "Chegou na loja de {cidade|nossa loja}.")
    assert campaigns.start(campaign).status == Campaign.Status.RUNNING


def test_the_sender_skips_a_contact_that_lost_its_value_after_the_start(make_owner):
    _user, tenant = make_owner()
    chip = placed_chip(tenant)
    group = contacts.create_list(tenant, "G")
    ana = consenting(tenant, "11 98888-0001", "Ana", [group], cidade="Campinas")
    campaign = campaigns.start(draft(tenant, [group], [chip], STORE))
    with scopes_disabled():
        Contact.objects.filter(pk=ana.pk).update(fields={})
        assert dispatch.send_batch(campaign, chip, uuid.uuid4(), 10) == dispatch.DONE
        recipient = CampaignRecipient.objects.get(campaign=campaign)
    assert recipient.status == R.SKIPPED and recipient.error == _("no value for %(variables)s") % {
        "variables": "{cidade}"}
    assert recipient.message_id is None


def test_the_builder_lists_who_lacks_which_field_and_the_portal_refuses_the_start(owner_client):
    tenant = owner_client.tenant
    chip = placed_chip(tenant)
    with_city, without = two_lists(tenant)
    preview = owner_client.post("/campanhas/previa/", {"template": STORE, "lists": [with_city.pk, without.pk]},
                                HTTP_HX_REQUEST="true").content.decode()
    assert 'id="preview-unfilled"' in preview and 'data-variable="cidade" data-count="8"' in preview
    assert "Cliente 2" in preview and "Cliente 7" not in preview  # a sample, with links to fix them
    with scopes_disabled():
        first = Contact.objects.get(tenant=tenant, name="Cliente 2")
    assert f'href="/contatos/{first.pk}/"' in preview
    fine = owner_client.post("/campanhas/previa/", {"template": "Loja de {cidade|nossa loja}",
                                                    "lists": [without.pk]}, HTTP_HX_REQUEST="true")
    assert 'id="preview-unfilled"' not in fine.content.decode()
    assert "Loja de nossa loja" in fine.content.decode()

    campaign = draft(tenant, [with_city, without], [chip], STORE)
    detail = owner_client.get(f"/campanhas/{campaign.pk}/").content.decode()
    assert 'id="preview-unfilled"' in detail  # seen on the draft before pressing Start
    response = owner_client.post(f"/campanhas/{campaign.pk}/iniciar/")
    assert response.status_code == 302
    errors = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("{cidade}: 8" in error for error in errors), errors
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
