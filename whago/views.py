"""Sign-up, the tenant's dashboard and settings (the public front page is whago.console.views)."""
import secrets
import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_ratelimit.decorators import ratelimit
from django_scopes import scopes_disabled

from . import ratelimits, services
from .admin_site import operator_required
from .forms import ApiKeyForm, InviteForm, SignUpForm, TenantSettingsForm
from .models import ApiKey, Invitation, Membership, Tenant, User, WorkerHeartbeat
from .tasks import ping
from .tenancy import activate_tenant, manager_required, tenant_required

AUTH_BACKEND = "django.contrib.auth.backends.ModelBackend"


@ratelimit(group="signup-address", key="ip", rate=ratelimits.per_address, method="POST", block=False)
@ratelimit(group="signup-site", key=ratelimits.whole_site, rate=ratelimits.site_wide, method="POST", block=False)
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated and request.tenant is not None:
        return redirect("dashboard")
    form = SignUpForm(request.POST or None)
    if getattr(request, "limited", False):
        # Counted before the form is read: a farm of sign-ups stops here, valid or not.
        messages.error(request, _("Too many sign-ups right now. Try again in an hour."))
        return render(request, "registration/signup.html", {"form": SignUpForm()}, status=429)
    if request.method == "POST" and form.is_valid():
        user, tenant = services.sign_up(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
            full_name=form.cleaned_data["full_name"],
            company=form.cleaned_data["company"],
        )
        login(request, user, backend=AUTH_BACKEND)
        activate_tenant(request, tenant)
        messages.success(request, _("Welcome to WHAGO! Your company %(name)s is ready.") % {"name": tenant.name})
        if settings.REQUIRE_EMAIL_CONFIRMATION:
            messages.info(request, _("We sent a link to %(email)s: open it to confirm your address and "
                                     "connect WhatsApp numbers.") % {"email": user.email})
        # Came from a paid plan's card: straight to Billing to choose it.
        return redirect("billing" if request.GET.get("plano") else "dashboard")
    return render(request, "registration/signup.html", {"form": form})


def confirm_email(request: HttpRequest, token: str) -> HttpResponse:
    """The link e-mailed at sign-up: the address is confirmed (no login needed)."""
    try:
        user = services.confirm_email(token)
    except services.AccountError as exc:
        messages.error(request, str(exc))
        return redirect("dashboard" if request.user.is_authenticated else "login")
    messages.success(request, _("Thank you: %(email)s is confirmed. You can connect WhatsApp numbers now.")
                     % {"email": user.email})
    return redirect("dashboard" if request.user.is_authenticated else "login")


@require_POST
@tenant_required
def resend_confirmation(request: HttpRequest) -> HttpResponse:
    if request.user.email_confirmed_at is None:
        services.send_email_confirmation(request.user)
        messages.success(request, _("We sent a new link to %(email)s.") % {"email": request.user.email})
    return redirect("dashboard")


def no_tenant(request: HttpRequest) -> HttpResponse:
    """A logged-in user who belongs to no active tenant: an operator, a removed member, or a suspended company."""
    suspended = services.suspended_tenants_of(request.user) if request.user.is_authenticated else []
    return render(request, "portal/no_tenant.html", {"suspended_tenants": suspended,
                                                     "support_email": settings.SUPPORT_EMAIL})


@tenant_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/dashboard.html", {
        "section": "dashboard", "email_confirmation_required": settings.REQUIRE_EMAIL_CONFIRMATION})


def _settings_page(request: HttpRequest, form=None, invite_form=None, status: int = 200) -> HttpResponse:
    context = {
        "section": "settings",
        "form": form or TenantSettingsForm(instance=request.tenant),
        "members": Membership.objects.select_related("user").order_by("created_at"),
        "invitations": Invitation.objects.filter(accepted_at__isnull=True).order_by("-created_at"),
        "invite_form": invite_form or InviteForm(),
    }
    return render(request, "portal/settings.html", context, status=status)


@tenant_required
def settings_page(request: HttpRequest) -> HttpResponse:
    # A copy of the tenant: a form that does not validate must not change the one the page header shows.
    form = TenantSettingsForm(request.POST or None, instance=Tenant.objects.get(pk=request.tenant.pk))
    if request.method == "POST":
        if not request.membership.can_manage:
            messages.error(request, _("Only owners and administrators can change the company settings."))
        elif form.is_valid():
            form.save()
            messages.success(request, _("Settings saved."))
            return redirect("settings")
        return _settings_page(request, form=form, status=400)
    return _settings_page(request, form=form)


@require_POST
@manager_required
def invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            services.invite_member(
                tenant=request.tenant,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                invited_by=request.user,
            )
        except services.AccountError as error:
            form.add_error("email", str(error))
        else:
            messages.success(request, _("Invitation sent to %(email)s.") % {"email": form.cleaned_data["email"]})
            return redirect("settings")
    # The errors next to the invitation's fields, what was typed kept.
    return _settings_page(request, invite_form=form, status=400)


def _member_action(request: HttpRequest, pk: int, action, done: str) -> HttpResponse:
    membership = get_object_or_404(Membership.objects.select_related("user"), pk=pk)
    try:
        action(membership)
    except services.AccountError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, done % {"name": membership.user.get_full_name() or membership.user.email})
    return redirect("settings")


@require_POST
@manager_required
def remove_member(request: HttpRequest, pk: int) -> HttpResponse:
    return _member_action(request, pk, lambda m: services.remove_member(m, by=request.membership),
                          _("%(name)s was removed from the company."))


@require_POST
@manager_required
def change_role(request: HttpRequest, pk: int) -> HttpResponse:
    role = request.POST.get("role", "")
    return _member_action(request, pk, lambda m: services.change_role(m, role, by=request.membership),
                          _("The role of %(name)s was changed."))


@require_POST
@manager_required
def transfer_ownership(request: HttpRequest, pk: int) -> HttpResponse:
    return _member_action(request, pk, lambda m: services.transfer_ownership(m, by=request.membership),
                          _("%(name)s is now the owner of the company; you are an administrator."))


@require_POST
@manager_required
def revoke_invitation(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = get_object_or_404(Invitation, pk=pk, accepted_at__isnull=True)
    invitation.delete()
    messages.success(request, _("Invitation revoked."))
    return redirect("settings")


def accept_invitation(request: HttpRequest, token: str) -> HttpResponse:
    invitation = services.find_invitation(token)
    if invitation is None:
        return render(request, "registration/invitation_invalid.html", status=404)
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                services.accept_invitation(invitation, request.user)
            except services.AccountError as error:
                messages.error(request, str(error))
                return redirect("dashboard" if request.tenant else "no_tenant")
            activate_tenant(request, invitation.tenant)
            messages.success(request, _("You joined %(tenant)s.") % {"tenant": invitation.tenant.name})
            return redirect("dashboard")
        return render(request, "registration/invitation_accept.html", {"invitation": invitation})
    has_account = User.objects.filter(email__iexact=invitation.email).exists()  # users are not scoped
    if has_account:
        messages.info(request, _("Log in with %(email)s to accept the invitation.") % {"email": invitation.email})
        return redirect(f"{reverse('login')}?next={request.path}")
    form = SignUpForm(request.POST or None, fixed_email=invitation.email)
    if request.method == "POST" and form.is_valid():
        user = User.objects.create_user(
            email=invitation.email, password=form.cleaned_data["password1"], full_name=form.cleaned_data["full_name"]
        )
        services.accept_invitation(invitation, user)
        login(request, user, backend=AUTH_BACKEND)
        activate_tenant(request, invitation.tenant)
        return redirect("dashboard")
    return render(request, "registration/invitation_signup.html", {"invitation": invitation, "form": form})


@require_POST
def switch_tenant(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("login")
    wanted = request.POST.get("tenant")
    for membership in request.memberships:
        if str(membership.tenant_id) == wanted:
            activate_tenant(request, membership.tenant)
            return redirect("dashboard")
    with scopes_disabled():
        suspended = Membership.objects.filter(user=request.user, tenant__is_active=False,
                                              tenant_id=wanted if str(wanted).isdigit() else None).first()
    if suspended is not None:  # a suspended company: only its Billing page is open
        activate_tenant(request, suspended.tenant)
        return redirect("billing")
    return HttpResponse(status=404)


@operator_required
def status(request: HttpRequest) -> HttpResponse:
    """Operator page: a ping task's round trip through a worker, and when the worker and beat
    processes were last seen (whago.heartbeats). 503 when anything is wrong, for an uptime probe."""
    from .heartbeats import states
    from .rest import UNAVAILABLE

    beat = WorkerHeartbeat.objects.create(token=secrets.token_hex(16))
    broker_error = ""
    try:
        ping.delay(beat.token)
    except UNAVAILABLE as exc:
        broker_error = str(exc)
    deadline = time.monotonic() + (0 if broker_error else 5)
    while time.monotonic() < deadline:
        beat.refresh_from_db()
        if beat.answered_at:
            break
        time.sleep(0.1)
    roles = states()
    healthy = beat.answered_at and not any(role.stale for role in roles)
    context = {"beat": beat, "broker_error": broker_error, "roles": roles,
               "stale_after": settings.HEARTBEAT_STALE_SECONDS}
    return render(request, "portal/status.html", context, status=200 if healthy else 503)


@manager_required
def api_keys(request: HttpRequest) -> HttpResponse:
    """List, create (shown once) and revoke the tenant's API keys."""
    form = ApiKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        _key, new_key = services.create_api_key(
            tenant=request.tenant, name=form.cleaned_data["name"], created_by=request.user
        )
        form = ApiKeyForm()
    context = {"section": "api", "form": form, "new_key": new_key, "keys": ApiKey.objects.all()}
    return render(request, "portal/api_keys.html", context)


@require_POST
@manager_required
def revoke_api_key(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=pk)
    services.revoke_api_key(key)
    messages.success(request, _("Key %(name)s revoked: it no longer works.") % {"name": key.name})
    return redirect("api_keys")
