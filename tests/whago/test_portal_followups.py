"""Issue 18's last portal items: a connected chip's page notices a failure as fast as a connecting one's, the chip
report counts the opt-outs the campaign report counts, and an import without a list name keeps the file."""
import re
from datetime import time, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from chips import campaigns, contacts
from chips.models import CampaignRecipient, Chip, Contact, ContactList, Message
from tests.chips.conftest import placed_chip, post_event

pytestmark = pytest.mark.django_db
CSV = "nome;telefone;origem_do_consentimento;data_do_consentimento\nAna;11 98765-4321;site;05/03/2025\n"


def live_interval(html: str) -> float:
    """Seconds between the refreshes of a chip page's live section (its htmx trigger)."""
    section = re.search(r'<section[^>]*id="chip-live"[^>]*>', html).group(0)
    return float(re.search(r'hx-trigger="every ([\d.]+)s"', section).group(1))


def test_a_connected_chip_shows_a_failure_at_the_next_refresh_of_two_seconds(owner_client, settings):
    chip = placed_chip(owner_client.tenant, status=Chip.Status.WORKING)
    page = owner_client.get(reverse("chip_detail", args=[chip.pk])).content.decode()
    assert live_interval(page) == settings.CHIPS_POLL_SECONDS <= 2
    post_event(Client(), chip, "session.status", {"name": chip.session_name, "status": "FAILED"}, "evt_failed",
               timestamp=int(timezone.now().timestamp() * 1000))
    refreshed = owner_client.get(reverse("chip_status", args=[chip.pk]) + "?shown=WORKING").content.decode()
    assert 'data-status="FAILED"' in refreshed and live_interval(refreshed) <= 2


def test_the_chip_report_counts_the_opt_outs_the_campaign_report_counts(make_owner):
    _user, tenant = make_owner()
    chip = placed_chip(tenant)
    group = contacts.create_list(tenant, "Clientes")
    for n in range(2):
        contacts.save_contact(tenant, phone=f"11 98888-000{n}", name=f"Cliente {n}", consent_source="loja",
                              consent_at=timezone.now() - timedelta(days=1), lists=[group])
    campaign = campaigns.start(campaigns.save_campaign(
        tenant, name="Promo", template="Oi", lists=[group], chips=[chip], pace_per_minute=10,
        window_days=list(range(7)), window_start=time(0), window_end=time(23, 59)))
    now = timezone.now()
    with scopes_disabled():
        for recipient in CampaignRecipient.objects.filter(campaign=campaign):
            message = Message.objects.create(tenant=tenant, chip=chip, direction=Message.Direction.OUT,
                                             peer=recipient.phone, body="Oi", status=Message.Status.DELIVERED,
                                             sent_at=now, delivered_at=now)
            CampaignRecipient.objects.filter(pk=recipient.pk).update(status=CampaignRecipient.Status.SENT,
                                                                     message=message, sent_at=now, chip=chip)
        first = CampaignRecipient.objects.filter(campaign=campaign).order_by("pk").first()
        CampaignRecipient.objects.filter(pk=first.pk).update(opted_out_at=now)
        # Someone who never got a campaign message unsubscribes through the same chip.
        Contact.objects.create(tenant=tenant, phone="+5511977770000", unsubscribed_at=now, unsubscribed_chip=chip)

    [row] = [row for row in campaigns.chip_report(tenant)["chips"] if row["chip"].pk == chip.pk]
    [per_chip] = campaigns.by_chip(campaign)
    assert row["totals"]["opted_out"] == per_chip["opted_out"] == campaigns.progress(campaign)["opted_out"] == 1


def test_an_import_without_a_list_name_goes_into_a_list_named_after_the_file(owner_client):
    tenant = owner_client.tenant
    upload = SimpleUploadedFile("clientes-loja.csv", CSV.encode(), "text/csv")
    response = owner_client.post(reverse("contact_import"), {"file": upload})
    assert response.status_code == 200, response.context["form"].errors
    name = f"clientes-loja {timezone.localdate():%d/%m/%Y}"
    with scopes_disabled():
        made = ContactList.objects.get(tenant=tenant, name=name)
        assert list(made.contacts.values_list("name", flat=True)) == ["Ana"]
    # The same file again: a list of its own, numbered; the name of an existing list imports into it.
    again = owner_client.post(reverse("contact_import"), {"file": SimpleUploadedFile("clientes-loja.csv", CSV.encode(),
                                                                                     "text/csv")})
    assert again.status_code == 200
    into = owner_client.post(reverse("contact_import"), {"file": SimpleUploadedFile("x.csv", CSV.encode(), "text/csv"),
                                                         "new_list": name.upper()})
    assert into.status_code == 200
    with scopes_disabled():
        names = sorted(ContactList.objects.filter(tenant=tenant).values_list("name", flat=True))
    assert names == [name, f"{name} (2)"]


def test_a_refused_file_leaves_no_empty_list_behind(owner_client):
    upload = SimpleUploadedFile("sem-telefone.csv", b"nome,cidade\nAna,Campinas\n", "text/csv")
    response = owner_client.post(reverse("contact_import"), {"file": upload})
    assert response.status_code == 400 and "telefone" in response.context["form"].errors["file"][0]
    with scopes_disabled():
        assert not ContactList.objects.filter(tenant=owner_client.tenant).exists()
