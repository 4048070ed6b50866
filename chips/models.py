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
