"""The tenant's domain: chips, contacts, messages, campaigns, and the outgoing webhook."""
import secrets
import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _
from django_scopes import ScopedManager

from whago.fields import EncryptedTextField


def _webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class TenantWebhook(models.Model):
    """Where WHAGO forwards a tenant's message and status events, signed with its secret."""

    tenant = models.OneToOneField("whago.Tenant", on_delete=models.CASCADE, related_name="outgoing_webhook")
    url = models.URLField(_("URL"), max_length=500)
    secret = EncryptedTextField(_("signing secret"), default=_webhook_secret, editable=False)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("outgoing webhook")
        verbose_name_plural = _("outgoing webhooks")

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event sent (or being retried) to a tenant's webhook: the delivery log."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="webhook_deliveries")
    # Sent as X-Whago-Event-Id: the same on every retry, so receivers can drop duplicates.
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event = models.CharField(_("event"), max_length=64)
    url = models.URLField(_("URL"), max_length=500)
    payload = models.JSONField(_("payload"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    response_status = models.PositiveSmallIntegerField(_("response status"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.event} → {self.url} ({self.status})"


class _LiveChipManager(models.Manager):
    """Hides soft-deleted chips (their messages are kept and still point to them)."""

    def get_queryset(self):
        return super().get_queryset().filter(deleted_at__isnull=True)


class Chip(models.Model):
    """A tenant's WhatsApp number: one WAHA session named chip_<id> in the tenant's container."""

    class Status(models.TextChoices):
        PROVISIONING = "PROVISIONING", _("Provisioning")
        STARTING = "STARTING", _("Starting")
        SCAN_QR_CODE = "SCAN_QR_CODE", _("Waiting for the QR code scan")
        WORKING = "WORKING", _("Connected")
        FAILED = "FAILED", _("Failed")
        STOPPED = "STOPPED", _("Stopped")
        DISCONNECTED = "DISCONNECTED", _("Disconnected")

    # Statuses whose page keeps polling: something is about to change.
    TRANSIENT = (Status.PROVISIONING, Status.STARTING, Status.SCAN_QR_CODE)

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="chips")
    alias = models.CharField(_("name"), max_length=80)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PROVISIONING)
    phone = models.CharField(_("phone number"), max_length=20, blank=True)
    push_name = models.CharField(_("WhatsApp name"), max_length=128, blank=True)
    session_name = models.CharField(_("session"), max_length=54, blank=True, db_index=True)
    waha_session = models.ForeignKey(
        "waha.WahaSession", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    proxy_assignment = models.ForeignKey(
        "proxies.ProxyAssignment", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_error = models.TextField(_("last error"), blank=True)
    # Set when a lower plan stopped this chip; it may be connected again once it fits the plan.
    suspended_at = models.DateTimeField(_("stopped by the plan limit at"), null=True, blank=True)
    # WAHA's timestamp (ms) of the last status event applied: older events arriving late are ignored.
    status_event_ms = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    status_changed_at = models.DateTimeField(_("status changed at"), null=True, blank=True)
    connected_at = models.DateTimeField(_("connected at"), null=True, blank=True)
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)

    objects = ScopedManager(tenant="tenant", _manager_class=_LiveChipManager)
    all_objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("chip")
        verbose_name_plural = _("chips")
        ordering = ["created_at", "pk"]
        default_manager_name = "objects"
        indexes = [models.Index(fields=["tenant", "deleted_at"])]

    def __str__(self) -> str:
        return self.alias

    @property
    def is_working(self) -> bool:
        return self.status == self.Status.WORKING

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def polls(self) -> bool:
        """Whether the portal keeps refreshing this chip's status."""
        return self.status in self.TRANSIENT and not self.is_deleted

    @property
    def display_phone(self) -> str:
        from .phones import display_phone

        return display_phone(self.phone) if self.phone else ""


def _media_path(instance: "Message", filename: str) -> str:
    return f"messages/{instance.tenant_id}/{uuid.uuid4().hex}/{filename}"


class Message(models.Model):
    """One WhatsApp message sent or received through a chip."""

    class Direction(models.TextChoices):
        OUT = "OUT", _("Sent")
        IN = "IN", _("Received")

    class Kind(models.TextChoices):
        TEXT = "text", _("Text")
        IMAGE = "image", _("Image")
        DOCUMENT = "document", _("Document")

    class Status(models.TextChoices):
        QUEUED = "QUEUED", _("Queued")
        SENT = "SENT", _("Sent")
        DELIVERED = "DELIVERED", _("Delivered")
        READ = "READ", _("Read")
        FAILED = "FAILED", _("Failed")
        RECEIVED = "RECEIVED", _("Received")

    # Order of progress of an outgoing message: acks only ever move it forward.
    PROGRESS = {Status.QUEUED: 0, Status.SENT: 1, Status.DELIVERED: 2, Status.READ: 3}

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="messages")
    chip = models.ForeignKey(Chip, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(_("direction"), max_length=3, choices=Direction.choices, default=Direction.OUT)
    # The other side, in E.164 (+5511987654321).
    peer = models.CharField(_("phone number"), max_length=20, db_index=True)
    peer_name = models.CharField(_("contact name"), max_length=128, blank=True)
    kind = models.CharField(_("type"), max_length=10, choices=Kind.choices, default=Kind.TEXT)
    body = models.TextField(_("text"), blank=True)
    media = models.FileField(_("file"), upload_to=_media_path, max_length=300, blank=True)
    media_name = models.CharField(_("file name"), max_length=200, blank=True)
    media_mimetype = models.CharField(_("file type"), max_length=100, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(_("failure reason"), blank=True)
    waha_id = models.CharField(_("WhatsApp message id"), max_length=200, blank=True, db_index=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=100, default=uuid.uuid4)
    reservation = models.ForeignKey(
        "billing.Reservation", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Free-form origin ("portal", "api", "campaign:12"), for campaigns and reports.
    source = models.CharField(_("source"), max_length=40, blank=True, default="portal")
    attempts = models.PositiveSmallIntegerField(_("send attempts"), default=0)
    # Set, in its own committed transaction, right before the HTTP call to WAHA: a task that
    # finds it set without a WhatsApp id knows a previous attempt may have sent the message.
    attempted_at = models.DateTimeField(_("last send attempt"), null=True, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)
    failed_at = models.DateTimeField(_("failed at"), null=True, blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "idempotency_key"], name="message_unique_idempotency_key"),
            models.UniqueConstraint(
                fields=["chip", "direction", "waha_id"], condition=~models.Q(waha_id=""), name="message_unique_waha_id"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["chip", "peer", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.peer} ({self.status})"

    @property
    def display_peer(self) -> str:
        from .phones import display_phone

        return display_phone(self.peer)

    @property
    def is_final(self) -> bool:
        return self.status in (self.Status.READ, self.Status.FAILED, self.Status.RECEIVED)
