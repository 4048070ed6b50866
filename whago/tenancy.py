"""Which tenant a request acts for, and the guards portal views use."""
from collections.abc import Callable
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.shortcuts import redirect
from django_scopes import scopes_disabled

from .models import Membership, Tenant

SESSION_KEY = "whago_tenant_id"


def memberships_of(user) -> list[Membership]:
    """Every membership of a user, across tenants (for login and the tenant switcher)."""
    with scopes_disabled():
        return list(
            Membership.objects.filter(user=user, tenant__is_active=True)
            .select_related("tenant")
            .order_by("tenant__name")
        )


def resolve_membership(request: HttpRequest) -> Membership | None:
    """The membership chosen in the session, else the user's first one."""
    memberships = memberships_of(request.user)
    request.memberships = memberships
    if not memberships:
        return None
    wanted = request.session.get(SESSION_KEY)
    for membership in memberships:
        if membership.tenant_id == wanted:
            return membership
    request.session[SESSION_KEY] = memberships[0].tenant_id
    return memberships[0]


def suspended_membership(request: HttpRequest) -> Membership | None:
    """A membership of a suspended tenant (the one chosen in the session, else the first), for the
    pages that stay open while suspended (Billing); None when the user has none."""
    with scopes_disabled():
        memberships = list(
            Membership.objects.filter(user=request.user, tenant__is_active=False)
            .select_related("tenant").order_by("tenant__name")
        )
    wanted = request.session.get(SESSION_KEY)
    return next((m for m in memberships if m.tenant_id == wanted), memberships[0] if memberships else None)


def activate_tenant(request: HttpRequest, tenant: Tenant) -> None:
    request.session[SESSION_KEY] = tenant.pk


def tenant_required(view: Callable) -> Callable:
    """Portal views: a logged-in member of the current tenant (scoped by the middleware)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request)
        if request.tenant is None:
            return redirect("no_tenant")
        return view(request, *args, **kwargs)

    return wrapper


def manager_required(view: Callable) -> Callable:
    """Portal views that change the tenant's settings: owners and administrators only."""

    @wraps(view)
    @tenant_required
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.membership.can_manage:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


def redirect_to_login(request: HttpRequest):
    from django.contrib.auth.views import redirect_to_login as _redirect

    return _redirect(request.get_full_path())


def presented_key(request: HttpRequest) -> str:
    """The API key in `Authorization: Bearer <key>` or `X-Api-Key: <key>`."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.META.get("HTTP_X_API_KEY", "").strip()
