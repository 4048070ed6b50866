"""WAHA containers, the sessions placed in them, their webhook events, stats and alerts."""
import base64
import hashlib
import hmac
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


# WAHA versions (year.month.patch) from which the session proxy takes SOCKS5 as well as HTTP(S).
# 2024.10.8 passes the proxy URL to an HTTPS proxy agent: socks5:// cannot work there (read
# in its source, src/core/helpers.proxy.ts).
SOCKS5_SINCE = (2025, 1)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in (version or "").split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


class WahaContainer(models.Model):
    """One WAHA server: a container WHAGO runs for a tenant, or an external server operators registered.

    What the server can do (tier, engine, signed webhooks, media, proxy schemes, whether it
    enforces its API key) is read from it (waha.containers.detect_capabilities), never assumed.
    """

    # None for an external server shared by every tenant (their sessions are scoped instead).
    tenant = models.ForeignKey(
        "whago.Tenant", on_delete=models.CASCADE, related_name="waha_containers", null=True, blank=True
    )
    name = models.CharField(_("name"), max_length=100, unique=True)
    runtime = models.CharField(_("runtime"), max_length=16)
    runtime_id = models.CharField(_("runtime id"), max_length=100, blank=True)
    # A host port is reserved in the database (unique per node), never in a cache alone. None for
    # external servers.
    port = models.PositiveIntegerField(_("port"), null=True, blank=True)
    # Runtime "swarm": the node the container is pinned to (Swarm's node id), its hostname and the
    # address WHAGO reaches its published port at. Empty on single-host runtimes.
    node = models.CharField(_("node id"), max_length=64, blank=True)
    node_name = models.CharField(_("node"), max_length=100, blank=True)
    node_address = models.CharField(_("node address"), max_length=100, blank=True)
    # External servers: where WHAGO reaches them. Empty for the containers WHAGO runs.
    url = models.URLField(_("URL"), max_length=200, blank=True)
    api_key = EncryptedTextField(_("API key"), default=_secret, editable=False)
    webhook_key = EncryptedTextField(_("webhook HMAC key"), default=_secret, editable=False)
    image = models.CharField(_("image"), max_length=200, blank=True)
    # WAHA's tier (Core: only the session "default"); the field keeps its first name.
    engine = models.CharField(_("tier"), max_length=8, choices=Engine.choices, default=Engine.PLUS)
    version = models.CharField(_("WAHA version"), max_length=32, blank=True)
    whatsapp_engine = models.CharField(_("WhatsApp engine"), max_length=16, blank=True)
    key_enforced = models.BooleanField(_("API key enforced"), null=True, blank=True)
    capabilities_at = models.DateTimeField(_("capabilities read at"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=ContainerStatus.choices, default=ContainerStatus.CREATING
    )
    capacity = models.PositiveIntegerField(_("capacity (sessions)"), default=1)
    # Limits from the tenant's plan (billing.limits.container_resources); empty: WAHA_MEMORY_LIMIT
    # and WAHA_CPU_LIMIT. External servers are their operators' to size.
    memory_mb = models.PositiveIntegerField(_("memory limit (MB)"), null=True, blank=True)
    cpus = models.DecimalField(_("CPU limit"), max_digits=4, decimal_places=2, null=True, blank=True)
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
        constraints = [models.UniqueConstraint(fields=["node", "port"], name="waha_container_unique_node_port")]

    def __str__(self) -> str:
        return self.name

    @property
    def base_url(self) -> str:
        """Where the app reaches this container's HTTP API."""
        if self.url:
            return self.url.rstrip("/")
        if self.runtime in ("docker", "swarm") and settings.WAHA_NETWORK_MODE == "network":
            return f"http://{self.name}:{self.port}"
        if self.runtime == "swarm" and self.node_address:
            host = f"[{self.node_address}]" if ":" in self.node_address else self.node_address
            return f"http://{host}:{self.port}"
        return f"http://{settings.WAHA_HOST}:{self.port}"

    @property
    def webhook_token(self) -> str:
        """The secret in this container's webhook URL: derived from its webhook key, so it
        changes when the key is rotated. It authenticates servers that sign nothing (Core)."""
        digest = hmac.new(self.webhook_key.encode(), f"waha-webhook-url:{self.pk}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")

    @property
    def webhook_url(self) -> str:
        """The URL this container posts its events to (names the container, carries its token)."""
        return f"{settings.WAHA_WEBHOOK_URL}/{self.pk}/{self.webhook_token}"

    @property
    def is_core(self) -> bool:
        """WAHA Core: one session, named "default"; no signed webhooks, retries or media."""
        return self.engine == Engine.CORE

    @property
    def signs_webhooks(self) -> bool:
        """Plus signs each webhook with the session's HMAC key (X-Webhook-Hmac); Core signs nothing."""
        return not self.is_core

    @property
    def sends_media(self) -> bool:
        """sendImage and sendFile: Plus only ("available only in Plus version" on Core)."""
        return not self.is_core

    @property
    def proxy_schemes(self) -> frozenset[str]:
        """The proxy URL schemes this server's session proxy can use."""
        version = _version_tuple(self.version)
        if version and version < SOCKS5_SINCE:
            return frozenset({"http", "https"})
        return frozenset({"http", "https", "socks5"})

    @property
    def is_external(self) -> bool:
        return self.runtime == "external"

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


class ExternalServerManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(runtime="external")


class ExternalServer(WahaContainer):
    """A WAHA server operators run themselves, registered in the admin (runtime "external")."""

    objects = ScopedManager(tenant="tenant", _manager_class=ExternalServerManager)

    class Meta:
        proxy = True
        verbose_name = _("external WAHA server")
        verbose_name_plural = _("external WAHA servers")


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
    # The config last given to WAHA (JSON, encrypted: it holds the proxy password and the
    # webhook key). Sent again before a start, because WAHA Core forgets it on a restart.
    config = EncryptedTextField(_("config"), blank=True, editable=False)
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
        return f"{self.container_id} {timezone.localtime(self.taken_at):%d/%m/%Y %H:%M}"


class AlertRule(models.TextChoices):
    STOPPED = "stopped", _("Stopped for over an hour")
    CPU = "cpu", _("CPU above the limit")
    MEMORY = "memory", _("Memory above the limit")
    ORPHAN = "orphan", _("Orphan container")
    INSECURE = "insecure", _("API key not enforced")
    PROXY = "proxy", _("Proxy scheme not supported")
    CAPACITY = "capacity", _("No room for new sessions")
    DOWN = "down", _("Down")
    SESSION_LOST = "session_lost", _("Session lost")


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
