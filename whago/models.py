"""Accounts and tenancy: users, tenants, memberships and invitations."""
import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_scopes import ScopedManager
from localflavor.br.br_states import STATE_CHOICES
from localflavor.br.validators import BRCNPJValidator, BRPostalCodeValidator


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, username):
        return self.get(email__iexact=username)


class User(AbstractUser):
    """A person who logs in with an e-mail address; may belong to several tenants."""

    username = None
    first_name = None
    last_name = None
    full_name = models.CharField(_("full name"), max_length=150, blank=True)
    email = models.EmailField(_("e-mail"), unique=True)
    # When the person proved the address is theirs (the link e-mailed at sign-up).
    email_confirmed_at = models.DateTimeField(_("e-mail confirmed at"), null=True, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email

    def __str__(self) -> str:
        return self.email


class SuspensionKind(models.TextChoices):
    NONPAYMENT = "nonpayment", _("Non-payment")
    OTHER = "other", _("Other reason")


class Tenant(models.Model):
    """A customer business. Everything it owns is scoped to it at the ORM."""

    name = models.CharField(_("company name"), max_length=120)
    slug = models.SlugField(_("slug"), max_length=64, unique=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    # Set by whago.services.suspend_tenant (is_active is then False), cleared on reactivation.
    suspended_at = models.DateTimeField(_("suspended at"), null=True, blank=True)
    suspension_reason = models.CharField(_("reason for the suspension"), max_length=300, blank=True)
    # Only a suspension for non-payment is lifted by a confirmed payment (billing.services).
    suspension_kind = models.CharField(_("kind of suspension"), max_length=16, choices=SuspensionKind.choices,
                                       blank=True)
    # The company's data printed on its receipts (edited in the portal's Settings).
    cnpj = models.CharField(_("CNPJ"), max_length=18, blank=True, validators=[BRCNPJValidator()])
    address_street = models.CharField(_("address"), max_length=200, blank=True,
                                      help_text=_("Street, number and complement."))
    address_district = models.CharField(_("district"), max_length=80, blank=True)
    address_city = models.CharField(_("city"), max_length=80, blank=True)
    address_state = models.CharField(_("state"), max_length=2, blank=True, choices=STATE_CHOICES)
    address_postal_code = models.CharField(_("postal code (CEP)"), max_length=9, blank=True,
                                           validators=[BRPostalCodeValidator()])

    class Meta:
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def address_lines(self) -> list[str]:
        """The postal address as printed on a receipt; [] when none was given."""
        city = " / ".join(part for part in (self.address_city, self.address_state) if part)
        last = " — ".join(part for part in (city, self.address_postal_code) if part)
        lines = [self.address_street, self.address_district, last]
        return [line for line in lines if line]


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    ADMIN = "admin", _("Administrator")
    MEMBER = "member", _("Member")


class Membership(models.Model):
    """A user's place in a tenant, with the role that says what they may manage."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("tenant"))
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("user"))
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(_("joined at"), auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user")]
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.get_role_display()})"

    @property
    def can_manage(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)


def _invitation_token() -> str:
    return secrets.token_urlsafe(32)


class Invitation(models.Model):
    """An e-mailed invitation to join a tenant; accepted once, valid for a week."""

    VALID_FOR = timedelta(days=7)

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations", verbose_name=_("tenant"))
    email = models.EmailField(_("e-mail"))
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.MEMBER)
    token = models.CharField(max_length=64, unique=True, default=_invitation_token, editable=False)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+",
                                   verbose_name=_("invited by"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    accepted_at = models.DateTimeField(_("accepted at"), null=True, blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "email"],
                condition=models.Q(accepted_at__isnull=True),
                name="invitation_one_pending_per_email",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} → {self.tenant}"

    @property
    def is_expired(self) -> bool:
        return timezone.now() > self.created_at + self.VALID_FOR


class WorkerHeartbeat(models.Model):
    """Written by the `whago.tasks.ping` task: proof that a Celery worker runs tasks."""

    token = models.CharField(_("token"), max_length=64, unique=True)
    requested_at = models.DateTimeField(_("requested at"), auto_now_add=True)
    answered_at = models.DateTimeField(_("answered at"), null=True, blank=True)
    worker = models.CharField(_("worker"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")

    def __str__(self) -> str:
        return self.token

    @property
    def round_trip(self) -> timedelta | None:
        return self.answered_at - self.requested_at if self.answered_at else None


class ProcessHeartbeat(models.Model):
    """The last sign of life of one `celery worker` or `celery beat` process (whago.heartbeats).

    Kept in the database, which a Redis outage does not take down. `silence_reported_at` is set
    on the last row of a silent role when operators were e-mailed about it, cleared when that
    process beats again.
    """

    class Role(models.TextChoices):
        WORKER = "worker", _("Celery worker")
        BEAT = "beat", _("Celery beat")

    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    name = models.CharField(_("process"), max_length=200)
    started_at = models.DateTimeField(_("started at"))
    seen_at = models.DateTimeField(_("last seen at"))
    silence_reported_at = models.DateTimeField(_("silence reported at"), null=True, blank=True)

    class Meta:
        verbose_name = _("process heartbeat")
        verbose_name_plural = _("process heartbeats")
        constraints = [models.UniqueConstraint(fields=["role", "name"], name="heartbeat_one_row_per_process")]
        indexes = [models.Index(fields=["role", "-seen_at"], name="heartbeat_latest")]

    def __str__(self) -> str:
        return f"{self.role} {self.name}"


class ApiKey(models.Model):
    """A tenant's key to the REST API. Only its SHA-256 is stored; the key is shown once."""

    PREFIX = "whg_"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(_("name"), max_length=80)
    prefix = models.CharField(_("prefix"), max_length=16, help_text=_("The key's first characters, to recognise it."))
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# What each kind of audited action is called on the console (its code stays in the log, searchable).
# Apps add theirs with whago.audit.name_actions.
AUDITED_ACTIONS = {
    "orphans.cleanup": _("Orphan cleanup"),
    "tenant.suspend": _("Tenant suspended"),
    "tenant.reactivate": _("Tenant reactivated"),
    "alert.acknowledge": _("Alert acknowledged"),
    "member.remove": _("Member removed"),
    "member.role": _("Member's role changed"),
    "member.transfer_ownership": _("Ownership transferred"),
}


def action_label(code: str) -> str:
    """The operator's words for an audit log action code (the code itself when no app named it)."""
    return str(AUDITED_ACTIONS[code]) if code in AUDITED_ACTIONS else code


class AuditLog(models.Model):
    """Something an operator did in the console (or asked the worker to do), and how it ended.

    Operators' data, seen only in the admin; the tenant link is for filtering and is kept
    empty for platform-wide actions. Entries are never edited by hand; they are deleted after
    AUDIT_LOG_RETENTION_DAYS (whago.tasks.prune_audit_log).
    """

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    actor = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("operator")
    )
    # Kept when the operator's account is deleted.
    actor_email = models.EmailField(_("operator's e-mail"), blank=True)
    action = models.CharField(_("action"), max_length=64)
    target_type = models.CharField(_("target type"), max_length=100, blank=True)
    target_id = models.CharField(_("target id"), max_length=64, blank=True)
    target_repr = models.CharField(_("target"), max_length=200, blank=True)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("tenant")
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.RUNNING)
    result = models.TextField(_("result"), blank=True)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("asked at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log")
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="auditlog_recent"),
            models.Index(fields=["target_type", "target_id"], name="auditlog_target"),
        ]
        permissions = [("view_dashboard", _("Can see the operations dashboard"))]

    def __str__(self) -> str:
        return f"{self.action} {self.target_repr}".strip()

    @property
    def action_name(self) -> str:
        """The action in the operator's words ("Contêiner: Reiniciar" for container.restart)."""
        return action_label(self.action)

    @property
    def is_finished(self) -> bool:
        return self.status != self.Status.RUNNING

    @property
    def duration(self) -> timedelta | None:
        return self.finished_at - self.created_at if self.finished_at else None
