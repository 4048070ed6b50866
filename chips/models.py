"""The tenant's domain: chips, contacts, messages, campaigns, and the outgoing webhook."""
import secrets
import uuid
from datetime import time
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_scopes import ScopedManager, scope

from whago.fields import EncryptedTextField

from . import phones


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
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            # The few pending rows, for the redeliver sweep (outgoing.overdue_deliveries).
            models.Index(fields=["created_at"], condition=models.Q(status="pending"), name="chips_delivery_pending"),
        ]

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

    class Action(models.TextChoices):
        """What may be done with a chip (its status decides: ACTIONS)."""

        CONNECT = "connect", _("Connect")
        RESTART = "restart", _("Restart")
        DISCONNECT = "disconnect", _("Disconnect")
        PAIR = "pair", _("Link a phone")  # show the QR code, ask for a pairing code
        SEND = "send", _("Send messages")

    # The chip's state machine: the actions each status allows (the portal's buttons, the API and
    # chips.lifecycle all ask can()), and the statuses that may follow each one (move_to refuses others).
    ACTIONS = {
        Status.PROVISIONING: frozenset(),
        Status.STARTING: frozenset({Action.DISCONNECT}),
        Status.SCAN_QR_CODE: frozenset({Action.RESTART, Action.DISCONNECT, Action.PAIR}),
        Status.WORKING: frozenset({Action.RESTART, Action.DISCONNECT, Action.SEND}),
        Status.FAILED: frozenset({Action.RESTART, Action.DISCONNECT}),
        Status.STOPPED: frozenset({Action.CONNECT, Action.DISCONNECT}),
        Status.DISCONNECTED: frozenset({Action.CONNECT}),
    }
    TRANSITIONS = {
        # The worker prepared the session (its first status), or gave up; deleting or a plan limit stops it.
        Status.PROVISIONING: frozenset({Status.STARTING, Status.SCAN_QR_CODE, Status.WORKING, Status.FAILED,
                                        Status.STOPPED}),
        # WAHA's answer or events; a failed call puts the previous status back; a lost session is provisioned again.
        Status.STARTING: frozenset({Status.PROVISIONING, Status.SCAN_QR_CODE, Status.WORKING, Status.FAILED,
                                    Status.STOPPED, Status.DISCONNECTED}),
        Status.SCAN_QR_CODE: frozenset({Status.STARTING, Status.WORKING, Status.FAILED, Status.STOPPED,
                                        Status.DISCONNECTED}),
        Status.WORKING: frozenset({Status.STARTING, Status.SCAN_QR_CODE, Status.FAILED, Status.STOPPED,
                                   Status.DISCONNECTED}),
        Status.FAILED: frozenset({Status.PROVISIONING, Status.STARTING, Status.SCAN_QR_CODE, Status.WORKING,
                                  Status.STOPPED, Status.DISCONNECTED}),
        Status.STOPPED: frozenset({Status.PROVISIONING, Status.STARTING, Status.SCAN_QR_CODE, Status.WORKING,
                                   Status.FAILED, Status.DISCONNECTED}),
        # Logged out on purpose: only connecting (or the number linked again) and deleting move it on.
        Status.DISCONNECTED: frozenset({Status.PROVISIONING, Status.STARTING, Status.WORKING, Status.STOPPED}),
    }

    class IllegalMove(ValueError):
        """move_to() was asked for a status that may not follow the chip's current one."""

    class Problem(models.TextChoices):
        """Why a chip is not connected, shown in the viewer's language (%(error)s: problem_detail)."""

        PROVISION_STALE = "provision_stale", _(
            "The WhatsApp server could not be prepared for a long time. Press Connect to try again; "
            "if it keeps failing, contact support.")
        PROXY_UNSUPPORTED = "proxy_unsupported", _(
            "This chip's proxy cannot be used by its WhatsApp server. The operators were told; try again later.")
        NO_ROOM = "no_room", _(
            "There is no room for a new WhatsApp number right now. The operators were told; try again later.")
        PROVISION_ERROR = "provision_error", _("The WhatsApp server could not be prepared: %(error)s")
        SESSION_CLOSED = "session_closed", _("WhatsApp closed the session.")

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
    # What went wrong as a code (+ a technical detail), so each viewer reads it in their own
    # language (error_text); last_error keeps the text as written, for older rows and free texts.
    problem = models.CharField(_("problem"), max_length=32, choices=Problem.choices, blank=True)
    problem_detail = models.CharField(_("problem detail"), max_length=500, blank=True)
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
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def display_phone(self) -> str:
        return phones.display_phone(self.phone) if self.phone else ""

    @property
    def error_text(self) -> str:
        """What went wrong, in the active language (the viewer's, in a request)."""
        if self.problem in self.Problem.values:
            text = str(self.Problem(self.problem).label)
            return text % {"error": self.problem_detail} if "%(error)s" in text else text
        return self.last_error

    def allowed_actions(self) -> frozenset:
        """The actions the chip's status allows now (none once deleted)."""
        return frozenset() if self.is_deleted else self.ACTIONS.get(self.status, frozenset())

    def can(self, action: str) -> bool:
        return action in self.allowed_actions()

    @classmethod
    def statuses_allowing(cls, action: str) -> list[str]:
        """The statuses in which `action` is allowed (to select such chips in a query)."""
        return [status for status, actions in cls.ACTIONS.items() if action in actions]

    def may_move_to(self, status: str) -> bool:
        return status in self.Status.values and (status == self.status or status in self.TRANSITIONS[self.status])

    def status_for_event(self, reported: str) -> str:
        """The status a WAHA session.status event gives the chip: a number logged out on purpose stays
        DISCONNECTED until it is linked again (WORKING), and a chip stopped by the plan limit stays STOPPED."""
        if self.status == self.Status.DISCONNECTED and reported != self.Status.WORKING:
            return self.Status.DISCONNECTED
        if self.suspended_at:
            return self.Status.STOPPED
        return reported

    def move_to(self, status: str, **fields) -> str:
        """The one writer of a chip's status: save `status` (and `fields`) if it may follow the current one.

        A new error text (last_error) without a problem code clears the old code. Returns the status
        before; raises Chip.IllegalMove, saving nothing, when the move is not in TRANSITIONS. Call it on
        a row locked for update (chips.lifecycle does, and announces the change).
        """
        if not self.may_move_to(status):
            raise self.IllegalMove(f"chip {self.pk}: {self.status} -> {status}")
        old = self.status
        if "last_error" in fields and "problem" not in fields:
            fields.update(problem="", problem_detail="")  # a new error text or none: the old code goes
        self.status = status
        for key, value in fields.items():
            setattr(self, key, value)
        if old != status:
            self.status_changed_at = timezone.now()
        self.save()
        return old

    def problem_fields(self, problem: str, detail: str = "") -> dict:
        """The fields that record a problem: the code, its detail, and the text in the active language."""
        self.problem, self.problem_detail = problem, detail[:500]
        return {"problem": problem, "problem_detail": self.problem_detail, "last_error": self.error_text}


def _media_path(instance: "Message", filename: str) -> str:
    return f"messages/{instance.tenant_id}/{uuid.uuid4().hex}/{filename}"


class Message(models.Model):
    """One WhatsApp message sent or received through a chip."""

    class Direction(models.TextChoices):
        OUT = "OUT", _("Sent")
        IN = "IN", _("Received")

    class MediaError(models.TextChoices):
        """Message.error of a received message whose file is not kept (chips/inbound_media.py)."""

        UNAVAILABLE = "media_unavailable", _("File not available on this WAHA server")
        TOO_LARGE = "media_too_large", _("File larger than the size kept; not stored")
        REFUSED = "media_refused", _("File not fetched: its address is not the chip's WAHA server")

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

    # Indexes are kept to those the queries use: every index is rewritten when a row moves to a
    # new page, and a message row changes three to five times (claim, SENT, acks). The tenant and
    # chip columns lead the composite indexes below, which serve their lookups.
    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="messages", db_index=False)
    chip = models.ForeignKey(Chip, on_delete=models.CASCADE, related_name="messages", db_index=False)
    direction = models.CharField(_("direction"), max_length=3, choices=Direction.choices, default=Direction.OUT)
    # The other side, in E.164 (+5511987654321).
    peer = models.CharField(_("phone number"), max_length=20)
    peer_name = models.CharField(_("contact name"), max_length=128, blank=True)
    kind = models.CharField(_("type"), max_length=10, choices=Kind.choices, default=Kind.TEXT)
    body = models.TextField(_("text"), blank=True)
    media = models.FileField(_("file"), upload_to=_media_path, max_length=300, blank=True)
    media_name = models.CharField(_("file name"), max_length=200, blank=True)
    media_mimetype = models.CharField(_("file type"), max_length=100, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(_("failure reason"), blank=True)
    # Looked up per chip: the unique (chip, direction, waha_id) index.
    waha_id = models.CharField(_("WhatsApp message id"), max_length=200, blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=100, default=uuid.uuid4)
    reservation = models.ForeignKey(
        "billing.Reservation", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Free-form origin ("portal", "api", "campaign:12"), for campaigns and reports.
    source = models.CharField(_("source"), max_length=40, blank=True, default="portal")
    attempts = models.PositiveSmallIntegerField(_("send attempts"), default=0)
    # The claim of a sender (chips/sending.py), committed before the message is handed to WAHA:
    # since attempted_at it may have reached WhatsApp. The lease is the sender's token and how long
    # it holds the message; a lease that expired is settled from evidence (chips.sending.settle).
    attempted_at = models.DateTimeField(_("last send attempt"), null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    leased_until = models.DateTimeField(null=True, blank=True, editable=False)
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
            models.Index(fields=["tenant", "peer"], name="message_tenant_peer"),
            # Received messages only (the menu's unread count reads them on every page); its columns never
            # change, so acks are still written in place.
            models.Index(fields=["tenant", "-created_at"], condition=models.Q(direction="IN"), name="message_inbound"),
            # Queued messages only (the send sweep reads them every few seconds): by lease expiry.
            models.Index(fields=["leased_until"], condition=models.Q(status="QUEUED"), name="message_queued"),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.peer} ({self.status})"

    @property
    def media_error_text(self) -> str:
        """Why a received file is not kept, in the viewer's language ("" when it is not that)."""
        return str(self.MediaError(self.error).label) if self.error in self.MediaError.values else ""

    @property
    def error_text(self) -> str:
        """The failure reason as the viewer reads it: a received file's code in their language."""
        return self.media_error_text or self.error

    @property
    def display_peer(self) -> str:
        return phones.display_phone(self.peer)

    @property
    def is_final(self) -> bool:
        return self.status in (self.Status.READ, self.Status.FAILED, self.Status.RECEIVED)


# --- contacts and campaigns -----------------------------------------------------------------
# Services: chips/contacts.py (contacts, lists, import, opt-out), chips/campaigns.py (building,
# templates, transitions, progress, reports), chips/dispatch.py (sending, exactly once).

DEFAULT_OPT_OUT_WORDS = "SAIR, PARAR, CANCELAR, STOP"


class CampaignSettings(models.Model):
    """A tenant's opt-out settings: the words that unsubscribe a contact and the confirmation sent back."""

    tenant = models.OneToOneField("whago.Tenant", on_delete=models.CASCADE, related_name="campaign_settings")
    opt_out_words = models.CharField(
        _("opt-out words"), max_length=500, default=DEFAULT_OPT_OUT_WORDS,
        help_text=_("Separated by commas. A message that is exactly one of them (upper or lower case, with or "
                    "without accents) unsubscribes the contact from every campaign."),
    )
    opt_out_reply = models.TextField(
        _("confirmation sent after an opt-out"), blank=True, max_length=1000,
        help_text=_("Sent once to the contact who opted out. Empty: a standard confirmation."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("opt-out settings")
        verbose_name_plural = _("opt-out settings")

    def __str__(self) -> str:
        return self.opt_out_words


class ContactList(models.Model):
    """A named group of contacts that campaigns target."""

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="contact_lists")
    name = models.CharField(_("name"), max_length=120)
    description = models.CharField(_("description"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("contact list")
        verbose_name_plural = _("contact lists")
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="contact_list_unique_name")]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    """A person a tenant may message: E.164 phone, recorded consent, custom fields, opt-out."""

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="contacts")
    name = models.CharField(_("name"), max_length=150, blank=True)
    phone = models.CharField(_("phone number"), max_length=20)
    # Consent is recorded when both are set; without it a contact is never sent a campaign.
    consent_source = models.CharField(_("consent source"), max_length=200, blank=True)
    consent_at = models.DateTimeField(_("consent date"), null=True, blank=True)
    fields = models.JSONField(_("custom fields"), default=dict, blank=True)
    lists = models.ManyToManyField(ContactList, related_name="contacts", blank=True, verbose_name=_("lists"))
    unsubscribed_at = models.DateTimeField(_("opted out at"), null=True, blank=True)
    unsubscribed_chip = models.ForeignKey(
        Chip, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("opted out through")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        ordering = ["name", "phone", "pk"]
        constraints = [models.UniqueConstraint(fields=["tenant", "phone"], name="contact_unique_phone")]

    def __str__(self) -> str:
        return self.name or self.phone

    @property
    def has_consent(self) -> bool:
        return bool(self.consent_at and self.consent_source.strip())

    @property
    def is_unsubscribed(self) -> bool:
        return self.unsubscribed_at is not None

    @property
    def can_receive_campaigns(self) -> bool:
        return self.has_consent and not self.is_unsubscribed

    @property
    def display_phone(self) -> str:
        return phones.display_phone(self.phone)


def _campaign_media_path(instance: "Campaign", filename: str) -> str:
    return f"campaigns/{instance.tenant_id}/{uuid.uuid4().hex}/{filename}"


def _all_days() -> list[int]:
    return [0, 1, 2, 3, 4, 5, 6]


def _window_start():
    return time(8, 0)


def _window_end():
    return time(20, 0)


def campaign_zone() -> ZoneInfo:
    """The time zone of send windows and schedules."""
    return ZoneInfo(settings.CAMPAIGN_TIME_ZONE)


class Campaign(models.Model):
    """A message sent to the consenting contacts of some lists, through some chips, at a pace."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        SCHEDULED = "scheduled", _("Scheduled")
        RUNNING = "running", _("Running")
        PAUSED = "paused", _("Paused")
        COMPLETED = "completed", _("Completed")
        CANCELED = "canceled", _("Canceled")

    # Which status may follow which; every change goes through transition().
    TRANSITIONS = {
        Status.DRAFT: (Status.SCHEDULED, Status.RUNNING, Status.CANCELED),
        Status.SCHEDULED: (Status.DRAFT, Status.RUNNING, Status.CANCELED),
        Status.RUNNING: (Status.PAUSED, Status.COMPLETED, Status.CANCELED),
        Status.PAUSED: (Status.RUNNING, Status.CANCELED),
        Status.COMPLETED: (),
        Status.CANCELED: (),
    }
    FINAL = (Status.COMPLETED, Status.CANCELED)

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(_("name"), max_length=120)
    template = models.TextField(
        _("message"), max_length=4096,
        help_text=_("Variables between braces: {nome}, {primeiro_nome}, {telefone} and your contacts' custom fields."),
    )
    media = models.FileField(_("image or document"), upload_to=_campaign_media_path, max_length=300, blank=True)
    media_kind = models.CharField(_("attachment type"), max_length=10, blank=True)
    media_name = models.CharField(_("file name"), max_length=200, blank=True)
    media_mimetype = models.CharField(_("file type"), max_length=100, blank=True)
    lists = models.ManyToManyField(ContactList, related_name="campaigns", blank=True, verbose_name=_("lists"))
    chips = models.ManyToManyField(
        Chip, through="CampaignChip", related_name="campaigns", blank=True, verbose_name=_("chips")
    )
    start_at = models.DateTimeField(_("start at"), null=True, blank=True)
    window_days = models.JSONField(_("days of the week"), default=_all_days)  # 0 = Monday … 6 = Sunday
    window_start = models.TimeField(_("send from"), default=_window_start)
    window_end = models.TimeField(_("send until"), default=_window_end)
    pace_per_minute = models.PositiveIntegerField(_("messages per minute per chip"), default=20)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.DRAFT)
    status_reason = models.CharField(_("reason"), max_length=500, blank=True)
    created_by = models.ForeignKey(
        "whago.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "start_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def is_editable(self) -> bool:
        return self.status == self.Status.DRAFT

    def can_become(self, status: str) -> bool:
        """Whether the campaign may move from its status to `status`."""
        return status in self.TRANSITIONS.get(self.status, ())

    def transition(self, status: str, reason: str = "", **fields) -> bool:
        """Move to `status` if the stored status still allows it (safe against concurrent changes).

        Returns False, changing nothing, when another process moved the campaign first or the
        transition is not allowed.
        """
        sources = [source for source, targets in self.TRANSITIONS.items() if status in targets]
        now = timezone.now()
        updates = {"status": status, "status_reason": reason[:500], "updated_at": now, **fields}
        if status == self.Status.RUNNING and not self.started_at:
            updates.setdefault("started_at", now)
        if status in self.FINAL:
            updates.setdefault("finished_at", now)
        with scope(tenant=self.tenant_id):
            changed = type(self).objects.filter(pk=self.pk, status__in=sources).update(**updates)
        if changed:
            for key, value in updates.items():
                setattr(self, key, value)
        return bool(changed)

    def send_interval(self) -> float:
        """Seconds between two sends of one chip (0: as fast as possible)."""
        return 60.0 / self.pace_per_minute if self.pace_per_minute else 0.0

    def in_window(self, when=None) -> bool:
        """Whether `when` (default: now) falls in the send window, in the campaign time zone."""
        local = timezone.localtime(when or timezone.now(), campaign_zone())
        if local.weekday() not in (self.window_days or []):
            return False
        moment = local.time().replace(second=0, microsecond=0)
        return self.window_start <= moment <= self.window_end


class CampaignChip(models.Model):
    """A chip a campaign sends from, and the lease of the worker lane sending through it."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="lanes")
    chip = models.ForeignKey(Chip, on_delete=models.CASCADE, related_name="+")
    # The lane holding this lease is the only one meant to run for this chip and campaign;
    # a lease that expired (its worker died) is taken over by the next kick.
    lease_token = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # Set when the chip refused a send (its session is down although it looked connected):
    # no lane for it before then, so it does not burn the recipients' retries.
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("campaign chip")
        verbose_name_plural = _("campaign chips")
        constraints = [models.UniqueConstraint(fields=["campaign", "chip"], name="campaign_chip_unique")]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.chip_id}"


class ChipPace(models.Model):
    """When a chip may start its next campaign send (shared by every campaign using it)."""

    chip = models.OneToOneField(Chip, on_delete=models.CASCADE, primary_key=True, related_name="+")
    next_send_at = models.DateTimeField()

    class Meta:
        verbose_name = _("chip pace")
        verbose_name_plural = _("chip paces")

    def __str__(self) -> str:
        return f"{self.chip_id} @ {self.next_send_at}"


class CampaignRecipient(models.Model):
    """One contact of a campaign: pending → claimed → sent / failed / skipped, exactly once."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        CLAIMED = "claimed", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        SKIPPED = "skipped", _("Skipped")

    # Their lookups are served by the composite indexes below (a row is rewritten into every index
    # each time its status changes: three times per recipient).
    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="campaign_recipients",
                               db_index=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients", db_index=False)
    contact = models.ForeignKey(Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    phone = models.CharField(_("phone number"), max_length=20)
    name = models.CharField(_("name"), max_length=150, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    # Sends that provably never reached WhatsApp (chip down) and were given to another lane.
    retries = models.PositiveSmallIntegerField(_("retries"), default=0)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    chip = models.ForeignKey(Chip, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    message = models.OneToOneField(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="campaign_recipient"
    )
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    error = models.TextField(_("reason"), blank=True)
    replied_at = models.DateTimeField(_("replied at"), null=True, blank=True)
    opted_out_at = models.DateTimeField(_("opted out at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("campaign recipient")
        verbose_name_plural = _("campaign recipients")
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["campaign", "phone"], name="campaign_recipient_unique_phone")]
        indexes = [
            models.Index(fields=["campaign", "status"]),
            models.Index(fields=["tenant", "phone", "sent_at"]),
            # The kick looks for claims whose lane died: few rows, found without a scan.
            models.Index(
                fields=["claimed_at"], condition=models.Q(status="claimed"), name="campaign_recipient_claimed"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.phone} ({self.status})"

    @property
    def display_phone(self) -> str:
        return phones.display_phone(self.phone)
