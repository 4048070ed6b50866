"""WAHA containers, the sessions placed in them, their webhook events, stats and alerts."""
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_scopes import ScopedManager

from whago.fields import EncryptedTextField


def _secret() -> str:
    return secrets.token_urlsafe(32)


class Engine(models.TextChoices):
    PLUS = "plus", _("Plus (many sessions)")
    CORE = "core", _("Core (session 'default' only)")


class ContainerStatus(models.TextChoices):
    CREATING = "creating", _("Creating")
    RUNNING = "running", _("Running")
    STOPPED = "stopped", _("Stopped")
    FAILED = "failed", _("Failed")


class WahaContainer(models.Model):
    """One WAHA server (a Docker container or a local simulator process) owned by a tenant."""

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="waha_containers")
    name = models.CharField(_("name"), max_length=100, unique=True)
    runtime = models.CharField(_("runtime"), max_length=16)
    runtime_id = models.CharField(_("runtime id"), max_length=100, blank=True)
    # Unique: a host port is reserved in the database, never in a cache alone.
    port = models.PositiveIntegerField(_("port"), unique=True)
    api_key = EncryptedTextField(_("API key"), default=_secret, editable=False)
    webhook_key = EncryptedTextField(_("webhook HMAC key"), default=_secret, editable=False)
    image = models.CharField(_("image"), max_length=200, blank=True)
    engine = models.CharField(_("engine"), max_length=8, choices=Engine.choices, default=Engine.PLUS)
    status = models.CharField(
        _("status"), max_length=16, choices=ContainerStatus.choices, default=ContainerStatus.CREATING
    )
    capacity = models.PositiveIntegerField(_("capacity (sessions)"), default=1)
    healthy = models.BooleanField(_("healthy"), default=False)
    last_health_at = models.DateTimeField(_("last health check"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    # Since when the container has been down (stopped or unreachable); None while up.
    down_since = models.DateTimeField(_("down since"), null=True, blank=True)
    restart_count = models.PositiveIntegerField(_("restarts by the health sweep"), default=0)
    # When the container was last (re)started by WHAGO: its uptime while running.
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    last_cpu_percent = models.FloatField(_("CPU %"), null=True, blank=True)
    last_memory_bytes = models.BigIntegerField(_("memory (bytes)"), null=True, blank=True)
    last_memory_percent = models.FloatField(_("memory %"), null=True, blank=True)
    last_stats_at = models.DateTimeField(_("last stats"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("WAHA container")
        verbose_name_plural = _("WAHA containers")
        ordering = ["tenant_id", "created_at"]
        indexes = [models.Index(fields=["tenant", "created_at"], name="waha_container_order")]

    def __str__(self) -> str:
        return self.name

    @property
    def base_url(self) -> str:
        """Where the app reaches this container's HTTP API."""
        if self.runtime == "docker" and settings.WAHA_NETWORK_MODE == "network":
            return f"http://{self.name}:{self.port}"
        return f"http://{settings.WAHA_HOST}:{self.port}"

    @property
    def webhook_url(self) -> str:
        """The URL this container posts its events to (identifies the container)."""
        return f"{settings.WAHA_WEBHOOK_URL}/{self.pk}"

    def mark_down(self, error: str) -> None:
        """Record that the container is not answering (keeps the first moment it went down)."""
        self.healthy = False
        self.last_error = error[:2000]
        self.last_health_at = timezone.now()
        if self.down_since is None:
            self.down_since = self.last_health_at

    def mark_up(self) -> None:
        self.healthy = True
        self.last_error = ""
        self.last_health_at = timezone.now()
        self.down_since = None
        self.status = ContainerStatus.RUNNING


class SessionStatus(models.TextChoices):
    STOPPED = "STOPPED", _("Stopped")
    STARTING = "STARTING", _("Starting")
    SCAN_QR_CODE = "SCAN_QR_CODE", _("Waiting for the QR code scan")
    WORKING = "WORKING", _("Working")
    FAILED = "FAILED", _("Failed")


class WahaSession(models.Model):
    """A WAHA session placed in a container; holds one seat of the container's capacity."""

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="waha_sessions")
    container = models.ForeignKey(WahaContainer, on_delete=models.CASCADE, related_name="sessions")
    name = models.CharField(_("name"), max_length=54)
    # The session's name inside WAHA: the same, except on Core where it is always "default".
    remote_name = models.CharField(_("name in WAHA"), max_length=54)
    status = models.CharField(_("status"), max_length=16, choices=SessionStatus.choices, default=SessionStatus.STOPPED)
    # Whether the session should be running: the health sweep starts it again if not.
    should_run = models.BooleanField(_("should run"), default=True)
    me_id = models.CharField(_("WhatsApp id"), max_length=64, blank=True)
    me_push_name = models.CharField(_("WhatsApp name"), max_length=128, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("WAHA session")
        verbose_name_plural = _("WAHA sessions")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="waha_session_unique_name"),
            models.UniqueConstraint(fields=["container", "remote_name"], name="waha_session_unique_remote_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.container_id}"


class WebhookEvent(models.Model):
    """A webhook received from a container, stored once per event id."""

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="waha_events")
    # Served by the unique (container, event_id) index: no index of its own.
    container = models.ForeignKey(WahaContainer, on_delete=models.CASCADE, related_name="events", db_index=False)
    event_id = models.CharField(_("event id"), max_length=100)
    event = models.CharField(_("event"), max_length=64)
    session = models.CharField(_("session"), max_length=100)
    payload = models.JSONField(_("body"))
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        constraints = [models.UniqueConstraint(fields=["container", "event_id"], name="waha_event_unique_id")]
        indexes = [models.Index(fields=["container", "-received_at"])]

    def __str__(self) -> str:
        return f"{self.event} {self.event_id}"


class StatsSample(models.Model):
    """CPU and memory of a container at one moment (the stats sweep writes one a minute)."""

    container = models.ForeignKey(WahaContainer, on_delete=models.CASCADE, related_name="stats_samples")
    cpu_percent = models.FloatField(_("CPU %"))
    memory_bytes = models.BigIntegerField(_("memory (bytes)"))
    memory_percent = models.FloatField(_("memory %"))
    # Sessions placed in the container when the sample was taken (the dashboard's chart).
    sessions = models.PositiveIntegerField(_("sessions"), default=0)
    taken_at = models.DateTimeField(_("taken at"), default=timezone.now, db_index=True)

    objects = ScopedManager(tenant="container__tenant")

    class Meta:
        verbose_name = _("stats sample")
        verbose_name_plural = _("stats samples")
        indexes = [models.Index(fields=["container", "taken_at"])]

    def __str__(self) -> str:
        return f"{self.container_id} {self.taken_at:%Y-%m-%d %H:%M}"


class AlertRule(models.TextChoices):
    STOPPED = "stopped", _("Stopped for over an hour")
    CPU = "cpu", _("CPU above the limit")
    MEMORY = "memory", _("Memory above the limit")
    ORPHAN = "orphan", _("Orphan container")


class AlertState(models.TextChoices):
    OPEN = "open", _("Open")
    ACKNOWLEDGED = "acknowledged", _("Acknowledged")
    RESOLVED = "resolved", _("Resolved")


class ContainerAlert(models.Model):
    """An operator alert about a container; at most one unresolved alert per subject and rule.

    Operators' data: not tenant-scoped (an orphan has no tenant), seen only in the admin.
    """

    container = models.ForeignKey(
        WahaContainer, on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts"
    )
    # The container's name, or the runtime name of an orphan (no row).
    subject = models.CharField(_("subject"), max_length=100)
    rule = models.CharField(_("rule"), max_length=16, choices=AlertRule.choices)
    state = models.CharField(_("state"), max_length=16, choices=AlertState.choices, default=AlertState.OPEN)
    message = models.TextField(_("message"))
    value = models.FloatField(_("measured value"), null=True, blank=True)
    opened_at = models.DateTimeField(_("opened at"), auto_now_add=True)
    acknowledged_at = models.DateTimeField(_("acknowledged at"), null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("acknowledged by"),
    )
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)

    class Meta:
        verbose_name = _("container alert")
        verbose_name_plural = _("container alerts")
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["-opened_at"], name="waha_alert_recent")]
        constraints = [
            models.UniqueConstraint(
                fields=["subject", "rule"],
                condition=~models.Q(state="resolved"),
                name="waha_alert_one_unresolved",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_rule_display()}: {self.subject}"
