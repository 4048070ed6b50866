"""Members: the owner changes roles, removes people and transfers the ownership; administrators remove plain
members only; nobody changes the owner or themselves; other companies' members are out of reach."""
import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django_scopes import scopes_disabled

from whago.models import AuditLog, Membership, Role

pytestmark = pytest.mark.django_db


def membership(user, tenant) -> Membership:
    with scopes_disabled():
        return Membership.objects.get(user=user, tenant=tenant)


def role_of(user, tenant) -> str | None:
    with scopes_disabled():
        found = Membership.objects.filter(user=user, tenant=tenant).first()
    return found.role if found else None


def errors(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "error"]


def test_the_owner_changes_roles_removes_and_transfers_the_ownership(owner_client, make_member):
    tenant, owner = owner_client.tenant, owner_client.user
    ana, bia = make_member(tenant), make_member(tenant)
    page = owner_client.get(reverse("settings")).content.decode()
    assert f'action="{reverse("remove_member", args=[membership(ana, tenant).pk])}"' in page

    owner_client.post(reverse("change_role", args=[membership(ana, tenant).pk]), {"role": Role.ADMIN})
    assert role_of(ana, tenant) == Role.ADMIN
    refused = owner_client.post(reverse("change_role", args=[membership(ana, tenant).pk]), {"role": Role.OWNER})
    assert errors(refused) and role_of(ana, tenant) == Role.ADMIN  # ownership moves only by a transfer

    owner_client.post(reverse("remove_member", args=[membership(bia, tenant).pk]))
    assert role_of(bia, tenant) is None
    assert bia.is_active  # the person keeps the account

    owner_client.post(reverse("transfer_ownership", args=[membership(ana, tenant).pk]))
    assert (role_of(ana, tenant), role_of(owner, tenant)) == (Role.OWNER, Role.ADMIN)
    with scopes_disabled():
        actions = set(AuditLog.objects.filter(tenant=tenant).values_list("action", flat=True))
    assert {"member.role", "member.remove", "member.transfer_ownership"} <= actions
    # The former owner, now an administrator, cannot touch the new owner.
    refused = owner_client.post(reverse("remove_member", args=[membership(ana, tenant).pk]))
    assert errors(refused) and role_of(ana, tenant) == Role.OWNER


def test_administrators_remove_plain_members_only_and_nobody_changes_themselves(client, make_owner, make_member):
    owner, tenant = make_owner()
    admin, other_admin, member = make_member(tenant, Role.ADMIN), make_member(tenant, Role.ADMIN), make_member(tenant)
    client.force_login(admin)
    for target in (owner, other_admin, admin):
        response = client.post(reverse("remove_member", args=[membership(target, tenant).pk]))
        assert errors(response), target
    assert errors(client.post(reverse("change_role", args=[membership(member, tenant).pk]), {"role": Role.ADMIN}))
    assert errors(client.post(reverse("transfer_ownership", args=[membership(member, tenant).pk])))
    assert role_of(member, tenant) == Role.MEMBER
    client.post(reverse("remove_member", args=[membership(member, tenant).pk]))
    assert role_of(member, tenant) is None
    assert {role_of(u, tenant) for u in (owner, other_admin, admin)} == {Role.OWNER, Role.ADMIN}


def test_members_cannot_manage_and_other_companies_are_out_of_reach(client, owner_client, make_owner, make_member):
    member = make_member(owner_client.tenant)
    other_owner, other = make_owner()
    assert owner_client.post(reverse("remove_member", args=[membership(other_owner, other).pk])).status_code == 404
    assert role_of(other_owner, other) == Role.OWNER
    client.force_login(member)
    target = membership(owner_client.user, owner_client.tenant).pk
    assert client.post(reverse("remove_member", args=[target])).status_code == 403
