import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from billing.models import Subscription
from tests.conftest import STRONG_PASSWORD
from whago.models import Membership, Role, Tenant, User

pytestmark = pytest.mark.django_db


def signup_data(**overrides):
    data = {
        "full_name": "Maria Souza",
        "company": "Padaria Pão Quente",
        "email": "maria@padaria.com.br",
        "password1": STRONG_PASSWORD,
        "password2": STRONG_PASSWORD,
    }
    data.update(overrides)
    return data


def test_signup_creates_user_tenant_owner_and_free_plan(client):
    response = client.post(reverse("signup"), signup_data())

    assert response.status_code == 302
    assert response.url == reverse("dashboard")
    user = User.objects.get(email="maria@padaria.com.br")
    tenant = Tenant.objects.get(name="Padaria Pão Quente")
    assert tenant.slug == "padaria-pao-quente"
    with scopes_disabled():
        membership = Membership.objects.get(user=user)
        subscription = Subscription.objects.get(tenant=tenant)
    assert membership.tenant == tenant and membership.role == Role.OWNER
    assert subscription.plan.code == "FREE"
    # The new owner is logged in and lands on the dashboard of the new tenant.
    page = client.get(reverse("dashboard"))
    assert page.status_code == 200
    assert "Padaria Pão Quente" in page.content.decode()


def test_two_companies_with_the_same_name_get_distinct_slugs(client, make_owner):
    make_owner(company="Loja")
    client.post(reverse("signup"), signup_data(company="Loja"))
    assert sorted(Tenant.objects.values_list("slug", flat=True)) == ["loja", "loja-2"]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"email": "owner@example.com.br"}, "email", "Já existe uma conta com este e-mail"),
        ({"email": "OWNER@example.com.br"}, "email", "Já existe uma conta com este e-mail"),
        ({"password1": "12345678901", "password2": "12345678901"}, "password1", "Esta senha é muito comum"),
        ({"password1": "curta", "password2": "curta"}, "password1", "Esta senha é muito curta"),
        ({"password2": "Outra-Senha-2026!"}, "password2", "As duas senhas não coincidem"),
        ({"company": ""}, "company", "Este campo é obrigatório"),
        ({"email": "nao-e-email"}, "email", "Insira um endereço de email válido"),
    ],
)
def test_bad_signup_explains_in_portuguese_and_creates_nothing(client, make_owner, overrides, field, message):
    make_owner(email="owner@example.com.br")
    users, tenants = User.objects.count(), Tenant.objects.count()

    response = client.post(reverse("signup"), signup_data(**overrides))

    assert response.status_code == 200
    assert message in " ".join(str(e) for e in response.context["form"].errors[field])
    assert message in response.content.decode()
    assert (User.objects.count(), Tenant.objects.count()) == (users, tenants)


def test_the_new_owner_confirms_the_address_before_connecting_a_number(client, django_capture_on_commit_callbacks):
    from django.core import mail

    from chips import errors, lifecycle

    with django_capture_on_commit_callbacks(execute=True):  # the link is e-mailed once sign-up commits
        client.post(reverse("signup"), signup_data())
    user = User.objects.get(email="maria@padaria.com.br")
    tenant = Tenant.objects.get(name="Padaria Pão Quente")
    assert user.email_confirmed_at is None
    assert "maria@padaria.com.br" in client.get(reverse("dashboard")).content.decode()

    # No WhatsApp number (no container) before the address is confirmed.
    with pytest.raises(errors.ChipError) as refused:
        lifecycle.create_chip(tenant, "Vendas")
    assert refused.value.code == "email_unconfirmed"
    page = client.post(reverse("chip_create"), {"alias": "Vendas"}, follow=True).content.decode()
    assert "Confirme seu e-mail" in page

    [message] = mail.outbox
    link = next(word for word in message.body.split() if "/confirmar-email/" in word)
    assert client.get(link.replace("http://testserver", "")).status_code == 302
    user.refresh_from_db()
    assert user.email_confirmed_at is not None
    assert lifecycle.create_chip(tenant, "Vendas").pk


@pytest.mark.parametrize("token", ["garbage", "expired"])
def test_a_bad_or_old_confirmation_link_confirms_nothing(client, settings, token):
    from whago import services

    client.post(reverse("signup"), signup_data())
    user = User.objects.get(email="maria@padaria.com.br")
    if token == "expired":
        settings.EMAIL_CONFIRMATION_DAYS = -1
        token = services.email_confirmation_link(user).rstrip("/").rsplit("/", 1)[1]
    response = client.get(reverse("confirm_email", args=[token]), follow=True)
    assert "link" in response.content.decode()
    user.refresh_from_db()
    assert user.email_confirmed_at is None


def test_signups_are_limited_per_address_and_site_wide(client, settings):
    settings.SIGNUP_RATE_PER_ADDRESS = "2/h"
    settings.SIGNUP_RATE_GLOBAL = "4/h"  # every attempt counts, the refused one too
    for n in range(2):
        response = client.post(reverse("signup"), signup_data(email=f"a{n}@loja.com.br", company=f"A{n}"))
        assert response.status_code == 302
        client.logout()
    farmed = client.post(reverse("signup"), signup_data(email="a3@loja.com.br", company="A3"))
    assert farmed.status_code == 429 and "Muitos cadastros" in farmed.content.decode()
    assert not User.objects.filter(email="a3@loja.com.br").exists()

    # Another address gets one more, then the site-wide limit holds for everybody.
    other = signup_data(email="b1@loja.com.br", company="B1")
    assert client.post(reverse("signup"), other, REMOTE_ADDR="127.0.0.2").status_code == 302
    client.logout()
    late = client.post(reverse("signup"), signup_data(email="c1@loja.com.br", company="C1"), REMOTE_ADDR="127.0.0.3")
    assert late.status_code == 429
    assert User.objects.count() == 3
