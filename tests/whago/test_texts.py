"""The small texts a customer sees: e-mails signed with the product's name and without HTML escapes, "Abrir"
where an action is meant, numbers with thousands separators, when a closed send window opens, an icon, plan
cards with buttons, and a plain 404 in the embedded mode."""
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.urls import reverse

from chips import campaigns
from chips.models import Campaign
from tests.chips.conftest import placed_chip
from whago.models import Role

from .test_settings import run_manage

pytestmark = pytest.mark.django_db
SAO_PAULO = ZoneInfo("America/Sao_Paulo")


def test_the_password_reset_e_mail_is_signed_with_the_site_name(client, make_owner, settings):
    user, _tenant = make_owner()
    client.post(reverse("password_reset"), {"email": user.email}, HTTP_HOST="127.0.0.1")
    [message] = mail.outbox
    assert "Equipe WHAGO" in message.body and "Equipe 127.0.0.1" not in message.body
    assert "127.0.0.1" not in message.subject


def test_the_invitation_e_mail_is_plain_text(owner_client):
    owner_client.tenant.name = "Pães & Doces D'Ana"
    owner_client.tenant.save()
    owner_client.post(reverse("invite"), {"email": "novo@example.com", "role": Role.MEMBER})
    [message] = mail.outbox
    assert "Pães & Doces D'Ana" in message.body and "&amp;" not in message.body and "&#x27;" not in message.body


def test_the_chip_list_says_abrir_for_the_action(owner_client):
    placed_chip(owner_client.tenant)
    html = owner_client.get(reverse("chip_list")).content.decode()
    assert ">Abrir</a>" in html and ">Aberto<" not in html


def test_the_quota_line_groups_thousands(owner_client):
    from tests.chips.conftest import set_plan

    set_plan(owner_client.tenant, "ENTERPRISE")
    html = owner_client.get(reverse("message_list")).content.decode()
    quota = html[html.index('id="quota"'):html.index("</p>", html.index('id="quota"'))]
    assert any(f"{n:,}".replace(",", ".") in quota for n in range(1000, 10_000_000, 1000) if n % 1000 == 0)


@pytest.mark.parametrize(("now", "expected"), [
    (datetime(2026, 12, 7, 6, 30, tzinfo=SAO_PAULO), datetime(2026, 12, 7, 8, 0)),     # Monday, before it opens
    (datetime(2026, 12, 7, 21, 0, tzinfo=SAO_PAULO), datetime(2026, 12, 8, 8, 0)),     # Monday, after it closed
    (datetime(2026, 12, 11, 21, 0, tzinfo=SAO_PAULO), datetime(2026, 12, 14, 8, 0)),   # Friday night → Monday
])
def test_window_opens_names_the_next_opening(now, expected):
    campaign = Campaign(window_days=[0, 1, 2, 3, 4], window_start=time(8), window_end=time(20))
    assert campaigns.window_opens(campaign, now) == expected


def test_a_campaign_outside_its_window_says_when_it_continues(owner_client):
    from django.utils import timezone

    from chips import contacts

    tenant = owner_client.tenant
    group = contacts.create_list(tenant, "G")
    contacts.save_contact(tenant, phone="11 98888-0001", name="Ana", consent_source="site",
                          consent_at=timezone.now() - timedelta(days=1), lists=[group])
    tomorrow = (timezone.localtime(timezone.now(), SAO_PAULO).weekday() + 1) % 7
    campaign = campaigns.start(campaigns.save_campaign(
        tenant, name="Amanhã", template="Oi", lists=[group], chips=[placed_chip(tenant)], pace_per_minute=10,
        window_days=[tomorrow], window_start=time(9), window_end=time(18)))
    html = owner_client.get(reverse("campaign_progress", args=[campaign.pk]), HTTP_HX_REQUEST="true").content.decode()
    opens = campaigns.window_opens(campaign)
    assert 'id="window-closed"' in html and opens.strftime("%d/%m") in html and opens.strftime("%H:%M") in html


def test_every_page_has_the_icon_and_the_logo(client):
    html = client.get(reverse("landing")).content.decode()
    assert 'rel="icon"' in html and "img/favicon.svg" in html and "img/logo.svg" in html
    assert client.get("/favicon.ico").status_code == 301


def test_plan_cards_have_a_button_and_a_price_each(client):
    html = client.get(reverse("landing")).content.decode()
    assert html.count('class="plan-action"') == html.count('class="plan"') >= 3
    assert "Comece grátis" in html and "Escolher" in html and "R$ 0,00" in html
    assert "Grátis</p>" not in html  # the free plan's name is not repeated as its price
    response = client.post(reverse("signup") + "?plano=BUSINESS", {
        "full_name": "Ana", "company": "Loja da Ana", "email": "ana@loja.com.br",
        "password1": "Zebra-Cachoeira-2026!", "password2": "Zebra-Cachoeira-2026!"})
    assert response.status_code == 302 and response["Location"] == reverse("billing")


def test_the_embedded_mode_shows_a_plain_404(tmp_path):
    script = ("from django.test import Client; r = Client().get('/nada-aqui/', HTTP_HOST='127.0.0.1'); "
              "print(r.status_code, 'URLconf' in r.content.decode(), 'Página não encontrada' in r.content.decode())")
    result = run_manage("shell", "-v", "0", "-c", script, WHAGO_VAR_DIR=str(tmp_path), CELERY_BROKER_URL="",
                        REDIS_URL="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == ["404", "False", "True"]


def test_a_plain_404_in_the_portal(owner_client, settings):
    settings.DEBUG = False
    response = owner_client.get("/chips/999999/")
    assert response.status_code == 404 and 'id="not-found"' in response.content.decode()
