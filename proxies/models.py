"""Proxy providers, their proxies, the egress assigned to each WAHA session, and health."""
import secrets
import string

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_scopes import ScopedManager

from whago.fields import EncryptedTextField

SESSION_ID_LENGTH = 12
SESSION_ID_ALPHABET = string.ascii_lowercase + string.digits
DATAIMPULSE_TEMPLATE = "{username}_session-{session_id}"


def new_session_id() -> str:
    """A random sticky-session id: 12 lowercase letters and digits."""
    return "".join(secrets.choice(SESSION_ID_ALPHABET) for _ in range(SESSION_ID_LENGTH))


def mask_session_id(session_id: str) -> str:
    """The session id as shown to tenants: its first and last two characters."""
    if len(session_id) <= 4:
        return "•" * len(session_id)
    return f"{session_id[:2]}{'•' * (len(session_id) - 4)}{session_id[-2:]}"


class Scheme(models.TextChoices):
    SOCKS5 = "socks5", "SOCKS5"
    HTTP = "http", "HTTP"


class Outcome(models.TextChoices):
    """What a health check found; everything but OK is a failure."""

    OK = "ok", _("OK")
    AUTH_FAILED = "auth_failed", _("Wrong credentials")
    REFUSED = "refused", _("Connection refused")
    TIMEOUT = "timeout", _("Timed out")
    UNREACHABLE = "unreachable", _("Unreachable")
    PROXY_ERROR = "proxy_error", _("Proxy could not reach the target")
    PROTOCOL_ERROR = "protocol_error", _("Not a proxy of this scheme")
    HTTP_ERROR = "http_error", _("Target answered with an error")


class Health(models.Model):
    """Health state of something traffic goes through (a proxy, or a gateway provider)."""

    healthy = models.BooleanField(_("healthy"), default=True)
    last_check = models.DateTimeField(_("last check"), null=True, blank=True)
    last_ok = models.DateTimeField(_("last success"), null=True, blank=True)
    last_outcome = models.CharField(_("last outcome"), max_length=20, choices=Outcome.choices, blank=True)
    latency_ms = models.PositiveIntegerField(_("latency (ms)"), null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(_("consecutive failures"), default=0)

    class Meta:
        abstract = True

    def record(self, outcome: str, latency_ms: int | None, threshold: int) -> str | None:
        """Apply one check result; returns "down" or "up" when the healthy flag flips."""
        now = timezone.now()
        self.last_check = now
        self.last_outcome = outcome
        if outcome == Outcome.OK:
            self.last_ok = now
            self.latency_ms = latency_ms
            self.consecutive_failures = 0
            if not self.healthy:
                self.healthy = True
                return "up"
            return None
        self.consecutive_failures += 1
        if self.healthy and self.consecutive_failures >= threshold:
            self.healthy = False
            return "down"
        return None


class ProxyProvider(Health):
    """Where egress comes from: a rotating gateway (sticky sessions) or a static list of proxies."""

    class Kind(models.TextChoices):
        GATEWAY = "gateway", _("Rotating gateway (sticky sessions)")
        STATIC = "static", _("Static list of proxies")

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.GATEWAY)
    scheme = models.CharField(_("scheme"), max_length=10, choices=Scheme.choices, default=Scheme.SOCKS5)
    host = models.CharField(_("host"), max_length=255, blank=True, help_text=_("Gateways only."))
    port = models.PositiveIntegerField(_("port"), null=True, blank=True, help_text=_("Gateways only."))
    username = models.CharField(_("username"), max_length=255, blank=True)
    password = EncryptedTextField(_("password"), blank=True)
    username_template = models.CharField(
        _("sticky-session username template"),
        max_length=255,
        default=DATAIMPULSE_TEMPLATE,
        help_text=_(
            "How the gateway username names a sticky session; {username} and {session_id} "
            "(12 characters) are replaced. DataImpulse: {username}_session-{session_id}."
        ),
    )
    country = models.CharField(_("country"), max_length=2, blank=True, help_text=_("ISO code, e.g. BR."))
    priority = models.PositiveSmallIntegerField(
        _("priority"), default=100, help_text=_("Lower numbers are used first when several providers are active.")
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("proxy provider")
        verbose_name_plural = _("proxy providers")
        ordering = ["priority", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_gateway(self) -> bool:
        return self.kind == self.Kind.GATEWAY

    @property
    def endpoint(self) -> str:
        """scheme://host:port of a gateway (no credentials); empty for static lists."""
        return format_server(self.scheme, self.host, self.port) if self.is_gateway and self.host else ""

    def sticky_username(self, session_id: str) -> str:
        """The gateway username that pins one sticky session."""
        return self.username_template.format(username=self.username, session_id=session_id)

    def clean(self) -> None:
        errors = {}
        if self.is_gateway:
            if not self.host:
                errors["host"] = _("A gateway needs a host.")
            if not self.port:
                errors["port"] = _("A gateway needs a port.")
        if self.port is not None and not 1 <= self.port <= 65535:
            errors["port"] = _("Ports go from 1 to 65535.")
        try:
            self.username_template.format(username="u", session_id="s")
        except (KeyError, IndexError, ValueError):
            errors["username_template"] = _("Use only {username} and {session_id} as placeholders.")
        if errors:
            raise ValidationError(errors)


class Proxy(Health):
    """One proxy of a static list."""

    provider = models.ForeignKey(
        ProxyProvider, on_delete=models.CASCADE, related_name="proxies", verbose_name=_("provider")
    )
    host = models.CharField(_("host"), max_length=255)
    port = models.PositiveIntegerField(_("port"))
    username = models.CharField(_("username"), max_length=255, blank=True)
    password = EncryptedTextField(_("password"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("proxy")
        verbose_name_plural = _("proxies")
        ordering = ["provider", "host", "port"]
        constraints = [models.UniqueConstraint(fields=["provider", "host", "port"], name="proxy_unique_endpoint")]

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return format_server(self.provider.scheme, self.host, self.port)

    def clean(self) -> None:
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValidationError({"port": _("Ports go from 1 to 65535.")})
        if self.provider_id and self.provider.is_gateway:
            raise ValidationError({"provider": _("Proxies belong to static-list providers.")})


def format_server(scheme: str, host: str, port: int | None) -> str:
    """scheme://host:port, with IPv6 addresses in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


class ProxyAssignment(models.Model):
    """The egress of one WAHA session of a tenant: a provider (and a proxy of a static list)."""

    tenant = models.ForeignKey(
        "whago.Tenant", on_delete=models.CASCADE, related_name="proxy_assignments", verbose_name=_("tenant")
    )
    session_name = models.CharField(_("session"), max_length=100, help_text=_("The WAHA session name."))
    session_id = models.CharField(
        _("sticky session id"), max_length=SESSION_ID_LENGTH, unique=True, default=new_session_id
    )
    provider = models.ForeignKey(
        ProxyProvider, on_delete=models.PROTECT, related_name="assignments", verbose_name=_("provider")
    )
    proxy = models.ForeignKey(
        Proxy, on_delete=models.PROTECT, null=True, blank=True, related_name="assignments", verbose_name=_("proxy")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    rotated_at = models.DateTimeField(_("rotated at"), null=True, blank=True)
    rotations = models.PositiveIntegerField(_("rotations"), default=0)
    released_at = models.DateTimeField(_("released at"), null=True, blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("proxy assignment")
        verbose_name_plural = _("proxy assignments")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["session_name"], condition=Q(released_at__isnull=True), name="assignment_one_active_per_session"
            )
        ]

    def __str__(self) -> str:
        return f"{self.session_name} → {self.provider.name}"

    @property
    def is_active(self) -> bool:
        return self.released_at is None

    @property
    def masked_session_id(self) -> str:
        return mask_session_id(self.session_id)


class ProxyCheck(models.Model):
    """One health check of a proxy or of a gateway provider."""

    provider = models.ForeignKey(
        ProxyProvider, on_delete=models.CASCADE, related_name="checks", verbose_name=_("provider")
    )
    proxy = models.ForeignKey(
        Proxy, on_delete=models.CASCADE, null=True, blank=True, related_name="checks", verbose_name=_("proxy")
    )
    checked_at = models.DateTimeField(_("checked at"), default=timezone.now, db_index=True)
    outcome = models.CharField(_("outcome"), max_length=20, choices=Outcome.choices)
    latency_ms = models.PositiveIntegerField(_("latency (ms)"), null=True, blank=True)
    detail = models.CharField(_("detail"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("proxy check")
        verbose_name_plural = _("proxy checks")
        ordering = ["-checked_at"]

    def __str__(self) -> str:
        return f"{self.proxy or self.provider} {self.outcome}"

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.OK


class ProxyAlert(models.Model):
    """Something operators must look at: a proxy went down, sessions moved, nothing healthy left."""

    class Kind(models.TextChoices):
        UNHEALTHY = "unhealthy", _("Proxy unhealthy")
        MOVED = "moved", _("Sessions moved to another proxy")
        NO_HEALTHY = "no_healthy", _("No healthy proxy to move sessions to")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    provider = models.ForeignKey(
        ProxyProvider, on_delete=models.CASCADE, related_name="alerts", verbose_name=_("provider")
    )
    proxy = models.ForeignKey(
        Proxy, on_delete=models.CASCADE, null=True, blank=True, related_name="alerts", verbose_name=_("proxy")
    )
    message = models.TextField(_("message"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)

    class Meta:
        verbose_name = _("proxy alert")
        verbose_name_plural = _("proxy alerts")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.proxy or self.provider}"
