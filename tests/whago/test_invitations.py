import pytest
from django.core import mail
from django.urls import reverse
from django_scopes import scopes_disabled

from tests.conftest import STRONG_PASSWORD
from whago.models import Invitation, Membership, Role

pytestmark = pytest.mark.django_db


def test_owner_invites_by_email_and_the_link_works_for_a_new_user(owner_client, client_factory):
    response = owner_client.post(reverse("invite"), {"email": "Joao@Example.com", "role": Role.ADMIN})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["joao@example.com"]
    with scopes_disabled():
        invitation = Invitation.objects.get(email="joao@example.com")
    link = reverse("accept_invitation", args=[invitation.token])
    assert link in message.body

    guest = client_factory()
    form = guest.get(link)
    assert form.status_code == 200
    joined = guest.post(link, {"full_name": "João", "password1": STRONG_PASSWORD, "password2": STRONG_PASSWORD})
    assert joined.status_code == 302
    with scopes_disabled():
        membership = Membership.objects.get(user__email="joao@example.com")
        assert membership.tenant == owner_client.tenant and membership.role == Role.ADMIN
        assert Invitation.objects.get(pk=invitation.pk).accepted_at is not None
    # The link is spent.
    assert client_factory().get(link).status_code == 404


def test_existing_user_accepts_after_logging_in(owner_client, make_owner, client_factory):
    other, other_tenant = make_owner(email="ana@example.com")
    owner_client.post(reverse("invite"), {"email": "ana@example.com", "role": Role.MEMBER})
    with scopes_disabled():
        token = Invitation.objects.get(email="ana@example.com").token
    ana = client_factory()
    assert ana.get(reverse("accept_invitation", args=[token])).url.startswith(reverse("login"))
    ana.force_login(other)
    assert ana.post(reverse("accept_invitation", args=[token])).status_code == 302
    # She now belongs to both and acts for the new one.
    assert ana.get(reverse("dashboard")).context["current_tenant"] == owner_client.tenant


def test_inviting_an_existing_member_is_refused_without_duplicate(owner_client):
    data = {"email": owner_client.user.email, "role": Role.MEMBER}
    response = owner_client.post(reverse("invite"), data, follow=True)
    assert "já é membro" in response.content.decode()
    with scopes_disabled():
        assert Invitation.objects.count() == 0
    assert mail.outbox == []


def test_inviting_twice_keeps_one_pending_invitation(owner_client):
    owner_client.post(reverse("invite"), {"email": "x@example.com", "role": Role.MEMBER})
    response = owner_client.post(reverse("invite"), {"email": "X@example.com", "role": Role.MEMBER}, follow=True)
    assert "já está pendente" in response.content.decode()
    with scopes_disabled():
        assert Invitation.objects.filter(email="x@example.com").count() == 1


def test_members_cannot_invite(client, make_owner, make_member):
    _, tenant = make_owner()
    member = make_member(tenant, role=Role.MEMBER)
    client.force_login(member)
    assert client.post(reverse("invite"), {"email": "y@example.com", "role": Role.MEMBER}).status_code == 403


def test_invitation_for_another_email_is_refused(owner_client, make_owner, client_factory):
    owner_client.post(reverse("invite"), {"email": "right@example.com", "role": Role.MEMBER})
    with scopes_disabled():
        token = Invitation.objects.get().token
    wrong, _ = make_owner(email="wrong@example.com")
    c = client_factory()
    c.force_login(wrong)
    c.post(reverse("accept_invitation", args=[token]))
    with scopes_disabled():
        assert not Membership.objects.filter(user=wrong, tenant=owner_client.tenant).exists()


def test_password_reset_sends_a_working_link(client, make_owner):
    user, _ = make_owner()
    client.post(reverse("password_reset"), {"email": user.email})
    assert len(mail.outbox) == 1
    link = next(w for w in mail.outbox[0].body.split() if "/password-reset/" in w)
    path = link.split("://", 1)[1].split("/", 1)[1]
    form = client.get("/" + path, follow=True)
    new = "Outra-Senha-Forte-2026"
    done = client.post(form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new)
