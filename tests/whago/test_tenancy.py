import pytest
from django.apps import apps
from django.urls import reverse
from django_scopes import ScopeError, scope, scopes_disabled

from whago import services
from whago.models import Invitation, Membership, Role

pytestmark = pytest.mark.django_db


def tenant_owned_models():
    """Every model with a foreign key to Tenant: all of them must be scoped at the ORM."""
    found = []
    for model in apps.get_models():
        for field in model._meta.get_fields():
            related = getattr(field, "related_model", None)
            points_to_tenant = related is not None and related._meta.label == "whago.Tenant"
            if points_to_tenant and field.concrete and (field.many_to_one or field.one_to_one):
                found.append(model)
    return found


def test_the_scope_check_finds_the_tenant_models():
    labels = {m._meta.label for m in tenant_owned_models()}
    assert {"whago.Membership", "whago.Invitation", "billing.Subscription"} <= labels


@pytest.mark.parametrize("model", tenant_owned_models(), ids=lambda m: m._meta.label)
def test_every_tenant_owned_model_raises_outside_a_scope(model):
    with pytest.raises(ScopeError):
        list(model._default_manager.all())
    with pytest.raises(ScopeError):
        model._default_manager.filter(pk=1).exists()


def test_a_scope_shows_only_that_tenants_rows(make_owner):
    _, tenant_a = make_owner()
    _, tenant_b = make_owner()
    with scope(tenant=tenant_a):
        assert {m.tenant_id for m in Membership.objects.all()} == {tenant_a.pk}
    with scope(tenant=tenant_b):
        assert {m.tenant_id for m in Membership.objects.all()} == {tenant_b.pk}


def test_members_page_shows_only_own_tenant(client, make_owner):
    owner_a, tenant_a = make_owner(company="Alfa")
    owner_b, _ = make_owner(company="Beta")
    client.force_login(owner_b)
    page = client.get(reverse("settings")).content.decode()
    assert owner_b.email in page
    assert owner_a.email not in page
    assert "Alfa" not in page


def test_tenant_b_gets_404_for_tenant_a_objects(client, make_owner):
    owner_a, tenant_a = make_owner()
    owner_b, tenant_b = make_owner()
    invitation = services.invite_member(tenant=tenant_a, email="x@example.com", role=Role.MEMBER, invited_by=owner_a)
    client.force_login(owner_b)

    assert client.post(reverse("revoke_invitation", args=[invitation.pk])).status_code == 404
    assert client.post(reverse("switch_tenant"), {"tenant": tenant_a.pk}).status_code == 404
    with scopes_disabled():
        assert Invitation.objects.filter(pk=invitation.pk).exists()
    # Still acting for tenant B.
    assert client.get(reverse("dashboard")).context["current_tenant"] == tenant_b


def test_switching_between_own_tenants(client, make_owner, make_member):
    owner, tenant_a = make_owner(company="Alfa")
    _, tenant_b = make_owner(company="Beta")
    with scopes_disabled():
        Membership.objects.create(tenant=tenant_b, user=owner, role=Role.ADMIN)
    client.force_login(owner)

    assert client.get(reverse("dashboard")).context["current_tenant"] == tenant_a
    response = client.post(reverse("switch_tenant"), {"tenant": tenant_b.pk})
    assert response.status_code == 302
    page = client.get(reverse("dashboard"))
    assert page.context["current_tenant"] == tenant_b
    assert 'name="tenant"' in page.content.decode()


@pytest.mark.parametrize("name", ["dashboard", "chip_list", "message_list", "campaign_list", "billing",
                                  "api_keys", "settings"])
def test_every_portal_link_renders_for_a_member(owner_client, name):
    assert owner_client.get(reverse(name)).status_code == 200


@pytest.mark.parametrize("name", ["dashboard", "chip_list", "settings", "billing"])
def test_portal_requires_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_tenant_users_never_reach_the_admin(owner_client):
    response = owner_client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response.url


def test_operators_see_every_tenant_in_the_admin(client, make_owner, operator):
    make_owner(company="Alfa")
    make_owner(company="Beta")
    client.force_login(operator)
    page = client.get("/admin/whago/membership/")
    # Membership is scoped; the admin is the one place scopes are off.
    assert page.status_code == 200
    body = page.content.decode()
    assert "Alfa" in body and "Beta" in body


def test_admin_pages_render_scoped_inlines(client, make_owner, operator):
    """Inlines query while the TemplateResponse renders: the site renders it unscoped."""
    owner, tenant = make_owner(company="Alfa")
    client.force_login(operator)
    page = client.get(f"/admin/whago/tenant/{tenant.pk}/change/")
    assert page.status_code == 200
    assert owner.email in page.content.decode()
