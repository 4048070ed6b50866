"""Tenant isolation of contacts, lists and campaigns: another company gets 404 on every URL of them."""
from datetime import time, timedelta

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from chips import campaigns, contacts
from chips.models import Campaign, Contact, ContactList

from .conftest import placed_chip

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant_a_objects(make_owner):
    _user, tenant = make_owner(company="Loja A")
    chip = placed_chip(tenant)
    group = contacts.create_list(tenant, "Segredos de A")
    contact = contacts.save_contact(tenant, phone="11 98888-0001", name="Cliente de A", consent_source="site",
                                    consent_at=timezone.now() - timedelta(days=1), lists=[group],
                                    fields={"cidade": "Campinas"})
    running = campaigns.save_campaign(tenant, name="Campanha de A", template="Oi {nome}", lists=[group], chips=[chip],
                                      window_days=list(range(7)), window_start=time(0), window_end=time(23, 59),
                                      pace_per_minute=10)
    campaigns.start(running)
    draft = campaigns.save_campaign(tenant, name="Rascunho de A", template="Oi", lists=[group], chips=[chip],
                                    window_days=[0], window_start=time(8), window_end=time(9), pace_per_minute=10)
    return {"contact": contact, "list": group, "running": running, "draft": draft}


def test_tenant_b_gets_404_on_every_url_of_tenant_a(client, make_owner, tenant_a_objects):
    user_b, _tenant_b = make_owner(company="Loja B")
    client.force_login(user_b)
    contact, group = tenant_a_objects["contact"], tenant_a_objects["list"]
    running, draft = tenant_a_objects["running"], tenant_a_objects["draft"]
    gets = [
        f"/contatos/{contact.pk}/", f"/contatos/listas/{group.pk}/",
        f"/campanhas/{running.pk}/", f"/campanhas/{draft.pk}/editar/", f"/campanhas/{running.pk}/progresso/",
        f"/campanhas/{running.pk}/destinatarios.csv", f"/campanhas/{running.pk}/relatorio/",
    ]
    posts = [
        f"/contatos/{contact.pk}/", f"/contatos/{contact.pk}/excluir/", f"/contatos/listas/{group.pk}/",
        f"/contatos/listas/{group.pk}/excluir/", f"/campanhas/{draft.pk}/editar/",
        f"/campanhas/{draft.pk}/iniciar/", f"/campanhas/{running.pk}/pausar/", f"/campanhas/{running.pk}/retomar/",
        f"/campanhas/{running.pk}/cancelar/", f"/campanhas/{running.pk}/rascunho/", f"/campanhas/{draft.pk}/excluir/",
    ]
    for url in gets:
        assert client.get(url).status_code == 404, url
    for url in posts:
        assert client.post(url, {"name": "x", "phone": "11 97777-0000"}).status_code == 404, url

    # Lists, pages and the preview of B show nothing of A.
    for url in ("/contatos/", "/contatos/listas/", "/campanhas/", "/campanhas/relatorio-chips/", "/painel/",
                "/contatos/descadastro/", "/campanhas/nova/"):
        page = client.get(url)
        assert page.status_code == 200, url
        text = page.content.decode()
        assert "Cliente de A" not in text and "Segredos de A" not in text and "Campanha de A" not in text, url
    preview = client.post("/campanhas/previa/", {"template": "Oi {nome}", "lists": [group.pk]}).content.decode()
    assert "Cliente de A" not in preview
    assert "Campinas" not in client.post("/campanhas/previa/", {"template": "{cidade}", "lists": [group.pk]}
                                         ).content.decode()
    # Choosing A's list or chip in B's builder is refused by the form.
    refused = client.post("/campanhas/nova/", {"name": "x", "template": "Oi", "lists": [group.pk],
                                               "chips": [running.chips.through.objects.first().chip_id],
                                               "window_days": ["0"], "window_start": "08:00", "window_end": "09:00",
                                               "pace_per_minute": "5"})
    assert refused.status_code == 400 and {"lists", "chips"} <= set(refused.context["form"].errors)

    # Nothing of A changed.
    with scopes_disabled():
        assert Contact.objects.filter(pk=contact.pk, name="Cliente de A").exists()
        assert ContactList.objects.filter(pk=group.pk, name="Segredos de A").exists()
        assert Campaign.objects.get(pk=running.pk).status == Campaign.Status.RUNNING
        assert Campaign.objects.filter(pk=draft.pk, status=Campaign.Status.DRAFT).exists()


def test_the_owner_sees_every_page_of_its_objects(client, tenant_a_objects):
    from whago.models import Membership

    with scopes_disabled():
        client.force_login(Membership.objects.filter(tenant=tenant_a_objects["list"].tenant).first().user)
    contact, group = tenant_a_objects["contact"], tenant_a_objects["list"]
    running, draft = tenant_a_objects["running"], tenant_a_objects["draft"]
    pages = {
        "/contatos/": "Cliente de A", "/contatos/novo/": "", f"/contatos/{contact.pk}/": "Cliente de A",
        "/contatos/importar/": "", "/contatos/listas/": "Segredos de A",
        f"/contatos/listas/{group.pk}/": "Cliente de A",
        "/contatos/descadastro/": "SAIR", "/campanhas/": "Campanha de A", "/campanhas/nova/": "Segredos de A",
        f"/campanhas/{running.pk}/": "Cliente de A", f"/campanhas/{draft.pk}/editar/": "Rascunho de A",
        f"/campanhas/{running.pk}/progresso/": 'data-status="running"', f"/campanhas/{running.pk}/relatorio/": "",
        "/campanhas/relatorio-chips/": "Vendas", "/painel/": "Campanha de A",
    }
    for url, expected in pages.items():
        response = client.get(url)
        assert response.status_code == 200, url
        assert expected in response.content.decode(), url
