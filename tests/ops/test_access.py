"""Who reaches the console: staff with permissions only; tenants' users never."""
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django_scopes import scopes_disabled

from whago.models import AuditLog, User

from .conftest import pass_second_factor

pytestmark = pytest.mark.django_db

STRONG = "Zebra-Cachoeira-2026!"


def staff_with(*perms: str) -> User:
    """A staff user holding exactly these "app_label.codename" permissions."""
    user = User.objects.create_user(email=f"staff{len(perms)}@whago.test", password=STRONG, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def log_in(client, user: User) -> None:
    """Logged in past the second factor (ops_settings turns it on): only permissions decide below."""
    client.force_login(user)
    pass_second_factor(client, user)


@pytest.mark.parametrize("url", ["/admin/", "/admin/dashboard/", "/admin/waha/wahacontainer/",
                                 "/admin/whago/tenant/", "/admin/whago/auditlog/"])
def test_tenant_users_are_sent_to_the_admin_login(owner_client, url):
    response = owner_client.get(url)
    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


def test_staff_without_permissions_see_nothing(client, container):
    log_in(client, staff_with())
    assert client.get("/admin/").status_code == 200  # the index, empty
    assert client.get("/admin/dashboard/").status_code == 403
    assert client.get(reverse("admin:waha_wahacontainer_changelist")).status_code == 403
    assert client.get(reverse("admin:waha_wahacontainer_logs", args=[container.pk])).status_code == 403
    assert client.get(reverse("admin:whago_tenant_changelist")).status_code == 403
    assert client.get(reverse("admin:whago_auditlog_changelist")).status_code == 403
    assert client.post(reverse("admin:waha_wahacontainer_action", args=[container.pk, "stop"]),
                       {"post": "yes"}).status_code == 403


def test_view_permission_shows_containers_but_no_action_that_changes_them(client, container):
    log_in(client, staff_with("waha.view_wahacontainer"))
    assert client.get(reverse("admin:waha_wahacontainer_changelist")).status_code == 200
    page = client.get(reverse("admin:waha_wahacontainer_change", args=[container.pk])).content.decode()
    assert 'id="action-list_sessions"' in page
    assert 'id="action-stop"' not in page and 'id="action-delete"' not in page
    for name in ("stop", "start", "restart", "delete"):
        url = reverse("admin:waha_wahacontainer_action", args=[container.pk, name])
        assert client.post(url, {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:waha_wahacontainer_orphans")).status_code == 403
    with scopes_disabled():
        assert not AuditLog.objects.exists()
    # Internal actions (tenant suspension) are never offered by URL.
    assert client.post(reverse("admin:waha_wahacontainer_action", args=[container.pk, "suspend"])).status_code == 404


def test_dashboard_needs_its_permission(client):
    log_in(client, staff_with("whago.view_dashboard"))
    assert client.get("/admin/dashboard/").status_code == 200
    assert reverse("ops_dashboard") in client.get("/admin/").content.decode()


def test_tenant_suspension_needs_the_change_permission(client, make_owner):
    _, tenant = make_owner()
    log_in(client, staff_with("whago.view_tenant"))
    assert client.get(reverse("admin:whago_tenant_changelist")).status_code == 200
    assert client.post(reverse("admin:whago_tenant_suspend", args=[tenant.pk]), {"reason": "x"}).status_code == 403
    tenant.refresh_from_db()
    assert tenant.is_active
    # No bulk action to suspend either: actions need the change permission.
    page = client.get(reverse("admin:whago_tenant_changelist")).content.decode()
    assert "suspend_selected" not in page
