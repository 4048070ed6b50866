"""Account operations: sign-up, invitations, membership, API keys, tenant suspension."""
import hashlib
import secrets

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django_scopes import scope, scopes_disabled

from . import audit
from .models import ApiKey, Invitation, Membership, Role, SuspensionKind, Tenant, User
from .signals import tenant_created, tenant_reactivated, tenant_suspended


class AccountError(Exception):
    """An operation the user asked for cannot be done; the message says why."""


def login_identifier(request, credentials: dict | None) -> str | None:
    """The account a login attempt is for, as django-axes counts it: e-mails ignore case."""
    value = (credentials or {}).get("username") or request.POST.get("username")
    return value.strip().lower() if value else None


def unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "empresa"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def sign_up(*, email: str, password: str, full_name: str, company: str) -> tuple[User, Tenant]:
    """Create the user, their tenant and the owner membership, and announce the tenant (tenant_created:
    billing starts its FREE subscription); e-mail the link that confirms the address (once the
    transaction commits)."""
    user = User.objects.create_user(email=email, password=password, full_name=full_name)
    tenant = Tenant.objects.create(name=company, slug=unique_slug(company))
    with scopes_disabled():
        Membership.objects.create(tenant=tenant, user=user, role=Role.OWNER)
    tenant_created.send(sender=Tenant, tenant=tenant, by=user)
    transaction.on_commit(lambda: send_email_confirmation(user))
    return user, tenant


EMAIL_CONFIRMATION_SALT = "whago.email-confirmation"


def email_confirmation_link(user: User) -> str:
    """A signed link, valid EMAIL_CONFIRMATION_DAYS, that confirms the user's current address."""
    token = signing.dumps({"user": user.pk, "email": user.email}, salt=EMAIL_CONFIRMATION_SALT)
    return settings.SITE_URL + reverse("confirm_email", args=[token])


def send_email_confirmation(user: User) -> None:
    context = {"user": user, "link": email_confirmation_link(user), "days": settings.EMAIL_CONFIRMATION_DAYS}
    send_mail(
        subject=_("Confirm your e-mail address on WHAGO"),
        message=render_to_string("registration/confirm_email.txt", context),
        from_email=None,
        recipient_list=[user.email],
    )


def confirm_email(token: str) -> User:
    """Confirm the address a link was sent to; AccountError when the link is bad, old or outdated."""
    try:
        data = signing.loads(token, salt=EMAIL_CONFIRMATION_SALT, max_age=settings.EMAIL_CONFIRMATION_DAYS * 86400)
    except signing.SignatureExpired as exc:
        raise AccountError(_("This confirmation link has expired: ask for a new one.")) from exc
    except signing.BadSignature as exc:
        raise AccountError(_("This confirmation link is not valid.")) from exc
    user = User.objects.filter(pk=data.get("user"), email__iexact=data.get("email", "")).first()
    if user is None:
        raise AccountError(_("This confirmation link is not valid."))
    if user.email_confirmed_at is None:
        user.email_confirmed_at = timezone.now()
        user.save(update_fields=["email_confirmed_at"])
    return user


def may_connect_numbers(tenant: Tenant) -> bool:
    """Whether the tenant may connect WhatsApp numbers (get a container): an owner confirmed the
    e-mail address, unless REQUIRE_EMAIL_CONFIRMATION is off."""
    if not settings.REQUIRE_EMAIL_CONFIRMATION:
        return True
    with scope(tenant=tenant.pk):
        return Membership.objects.filter(
            tenant_id=tenant.pk, role=Role.OWNER, user__email_confirmed_at__isnull=False
        ).exists()


def invite_member(*, tenant: Tenant, email: str, role: str, invited_by: User) -> Invitation:
    """Record an invitation and e-mail its link; refuses members and pending duplicates."""
    email = email.strip().lower()
    with scope(tenant=tenant.pk):
        if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
            raise AccountError(_("%(email)s is already a member of %(tenant)s.") % {"email": email, "tenant": tenant})
        if Invitation.objects.filter(tenant=tenant, email__iexact=email, accepted_at__isnull=True).exists():
            raise AccountError(_("An invitation to %(email)s is already pending.") % {"email": email})
        try:
            with transaction.atomic():
                invitation = Invitation.objects.create(tenant=tenant, email=email, role=role, invited_by=invited_by)
        except IntegrityError as exc:  # a concurrent identical invitation won the race
            raise AccountError(_("An invitation to %(email)s is already pending.") % {"email": email}) from exc
    link = settings.SITE_URL + reverse("accept_invitation", args=[invitation.token])
    context = {"invitation": invitation, "link": link, "inviter": invited_by}
    send_mail(
        subject=_("You were invited to %(tenant)s on WHAGO") % {"tenant": tenant.name},
        message=render_to_string("registration/invitation_email.txt", context),
        from_email=None,
        recipient_list=[email],
    )
    return invitation


def find_invitation(token: str) -> Invitation | None:
    """A pending, unexpired invitation by its token."""
    with scopes_disabled():
        invitation = (
            Invitation.objects.select_related("tenant").filter(token=token, accepted_at__isnull=True).first()
        )
    if invitation is None or invitation.is_expired:
        return None
    return invitation


@transaction.atomic
def accept_invitation(invitation: Invitation, user: User) -> Membership:
    """Join the invitation's tenant; the invitation must be for this user's e-mail."""
    if invitation.email.lower() != user.email.lower():
        raise AccountError(_("This invitation was sent to another e-mail address."))
    with scope(tenant=invitation.tenant_id):
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if locked.accepted_at is not None:
            raise AccountError(_("This invitation was already used."))
        membership, _created = Membership.objects.get_or_create(
            tenant=locked.tenant, user=user, defaults={"role": locked.role}
        )
        locked.accepted_at = timezone.now()
        locked.save(update_fields=["accepted_at"])
    return membership


# --- members ---------------------------------------------------------------------------------------


def _locked(membership: Membership) -> Membership:
    with scope(tenant=membership.tenant_id):
        return Membership.objects.select_for_update().select_related("user", "tenant").get(pk=membership.pk)


def _may_change(actor: Membership, target: Membership) -> None:
    """Owners change anyone but themselves; administrators change plain members only."""
    if target.pk == actor.pk:
        raise AccountError(_("You cannot change your own membership here."))
    if target.role == Role.OWNER:
        raise AccountError(_("The owner cannot be changed: the owner transfers the ownership first."))
    if actor.role != Role.OWNER and (actor.role != Role.ADMIN or target.role != Role.MEMBER):
        raise AccountError(_("Only the owner can change administrators."))


@transaction.atomic
def remove_member(membership: Membership, *, by: Membership) -> None:
    """Take a person out of the tenant (their account and other companies stay)."""
    target = _locked(membership)
    _may_change(by, target)
    with scope(tenant=target.tenant_id):
        target.delete()
    audit.record("member.remove", actor=by.user, target=target.tenant, status=audit.AuditLog.Status.SUCCEEDED,
                 result=target.user.email)


@transaction.atomic
def change_role(membership: Membership, role: str, *, by: Membership) -> Membership:
    """Make a member an administrator or back (the owner's role moves only by a transfer)."""
    if role not in (Role.ADMIN, Role.MEMBER):
        raise AccountError(_("Choose administrator or member."))
    target = _locked(membership)
    _may_change(by, target)
    if by.role != Role.OWNER:
        raise AccountError(_("Only the owner can change roles."))
    target.role = role
    with scope(tenant=target.tenant_id):
        target.save(update_fields=["role"])
    audit.record("member.role", actor=by.user, target=target.tenant, status=audit.AuditLog.Status.SUCCEEDED,
                 result=f"{target.user.email}: {role}")
    return target


@transaction.atomic
def transfer_ownership(membership: Membership, *, by: Membership) -> None:
    """The owner hands the company to another member, and stays as an administrator."""
    owner, target = _locked(by), _locked(membership)
    if owner.role != Role.OWNER:
        raise AccountError(_("Only the owner can transfer the ownership."))
    if target.pk == owner.pk or target.tenant_id != owner.tenant_id:
        raise AccountError(_("Choose another member of the company."))
    with scope(tenant=owner.tenant_id):
        Membership.objects.filter(pk=owner.pk).update(role=Role.ADMIN)
        Membership.objects.filter(pk=target.pk).update(role=Role.OWNER)
    audit.record("member.transfer_ownership", actor=owner.user, target=owner.tenant,
                 status=audit.AuditLog.Status.SUCCEEDED, result=target.user.email)


def hash_api_key(raw: str) -> str:
    # Keys are 190+ random bits: a fast hash is enough, unlike passwords.
    return hashlib.sha256(raw.encode()).hexdigest()


def create_api_key(*, tenant: Tenant, name: str, created_by: User) -> tuple[ApiKey, str]:
    """Make a key for the tenant; returns the row and the clear key, which is never stored."""
    raw = ApiKey.PREFIX + secrets.token_urlsafe(32)
    with scope(tenant=tenant.pk):
        key = ApiKey.objects.create(
            tenant=tenant, name=name, prefix=raw[:12], key_hash=hash_api_key(raw), created_by=created_by
        )
    return key, raw


def revoke_api_key(key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])


def authenticate_api_key(raw: str) -> ApiKey | None:
    """The active key for a presented secret, of an active tenant; None otherwise."""
    if not raw or not raw.startswith(ApiKey.PREFIX):
        return None
    with scopes_disabled():
        key = ApiKey.objects.select_related("tenant").filter(key_hash=hash_api_key(raw)).first()
    if key is None or not key.is_active or not key.tenant.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        # Written at most once a minute: no write on every API call.
        ApiKey.objects.with_scopes_disabled().filter(pk=key.pk).update(last_used_at=now)
    return key


def suspended_tenant_of_key(raw: str) -> Tenant | None:
    """The suspended tenant whose active key this is (the API then says so instead of "invalid")."""
    if not raw or not raw.startswith(ApiKey.PREFIX):
        return None
    with scopes_disabled():
        key = ApiKey.objects.select_related("tenant").filter(key_hash=hash_api_key(raw)).first()
    if key is None or not key.is_active or key.tenant.is_active:
        return None
    return key.tenant


def suspension_message(tenant: Tenant) -> str:
    """Why a tenant is suspended and whom to contact (the API's and the portal's words)."""
    message = _("The account of %(name)s is suspended.") % {"name": tenant.name}
    if tenant.suspension_reason:
        message += " " + _("Reason: %(reason)s.") % {"reason": tenant.suspension_reason.rstrip(".")}
    if tenant.suspension_kind == SuspensionKind.NONPAYMENT:
        return message + " " + _("Pay on the Billing page: the account is reactivated as soon as the payment is "
                                 "confirmed. Questions: %(support)s.") % {"support": settings.SUPPORT_EMAIL}
    return message + " " + _("Contact %(support)s to reactivate it; the Billing page stays open to pay.") % {
        "support": settings.SUPPORT_EMAIL}


@transaction.atomic
def suspend_tenant(tenant: Tenant, *, by: User | None = None, reason: str = "",
                   kind: str = SuspensionKind.OTHER) -> bool:
    """Suspend a tenant: no portal, no API, its sessions stopped; its data kept. False if it already was.

    Members then see a "suspended" page (Billing stays open) and API keys answer 403
    tenant_suspended (both check is_active);
    receivers of `tenant_suspended` stop what runs for the tenant. kind NONPAYMENT: a confirmed payment
    lifts it (billing.services); any other kind only an operator.
    """
    reason = reason.strip()[:300]
    changed = Tenant.objects.filter(pk=tenant.pk, is_active=True).update(
        is_active=False, suspended_at=timezone.now(), suspension_reason=reason, suspension_kind=kind
    )
    tenant.refresh_from_db(fields=["is_active", "suspended_at", "suspension_reason", "suspension_kind"])
    if not changed:
        return False
    audit.record("tenant.suspend", actor=by, target=tenant, status=audit.AuditLog.Status.SUCCEEDED,
                 result=reason or "suspended", detail={"kind": kind})
    tenant_suspended.send(sender=Tenant, tenant=tenant, by=by, reason=reason)
    return True


@transaction.atomic
def reactivate_tenant(tenant: Tenant, *, by: User | None = None, only_kind: str = "", why: str = "") -> bool:
    """Lift a suspension: the portal and API work again, receivers restart what they stopped.

    only_kind: lift it only if the tenant was suspended for that kind (a payment lifts only NONPAYMENT);
    why: what the audit log says (default "reactivated")."""
    suspended = Tenant.objects.filter(pk=tenant.pk, is_active=False)
    if only_kind:
        suspended = suspended.filter(suspension_kind=only_kind)
    changed = suspended.update(is_active=True, suspended_at=None, suspension_reason="", suspension_kind="")
    tenant.refresh_from_db(fields=["is_active", "suspended_at", "suspension_reason", "suspension_kind"])
    if not changed:
        return False
    audit.record("tenant.reactivate", actor=by, target=tenant, status=audit.AuditLog.Status.SUCCEEDED,
                 result=why or "reactivated")
    tenant_reactivated.send(sender=Tenant, tenant=tenant, by=by)
    return True


def suspended_tenants_of(user) -> list[Tenant]:
    """The suspended tenants a user belongs to (what their portal says instead of the pages)."""
    with scopes_disabled():
        return list(Tenant.objects.filter(memberships__user=user, is_active=False).order_by("name"))
