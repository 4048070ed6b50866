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
