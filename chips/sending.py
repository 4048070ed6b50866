"""Sending messages through WAHA: each message handed to WhatsApp once, claimed by a lease,
its outcome recorded in batches, and what a crash leaves in between settled from evidence.

An outgoing message is a Message(direction=OUT). Its life, with the code that does each step:

1. Queue (send_message, send_messages): the message is stored QUEUED with its quota counted,
   and a task (tasks.send_message / tasks.send_messages) is queued when that commits.
2. Claim (Sender.claim): one conditional UPDATE takes every message of the task that is QUEUED
   and leased by nobody: lease_token = the sender's token, leased_until = now + the lease,
   attempts + 1, attempted_at = now. It commits before anything is handed to WAHA, so a message
   is never handed by two senders. A campaign lane creates its messages already leased
   (Sender.lease_fields), which is the same claim.
3. Hand over (Sender.send): one POST /api/sendText (sendImage, sendFile) per message. The outcome
   stays in memory: sent (with WAHA's id), to be retried (it provably never reached WhatsApp),
   failed (refused), or in doubt (no answer: WhatsApp may have it).
4. Record (Sender.record): every CHIPS_SEND_RECORD_EVERY outcomes or CHIPS_SEND_RECORD_SECONDS, in one
   transaction:
   one UPDATE writes the outcomes of the messages still leased by this sender, one renews the
   leases of those it still holds; then WAHA's acks stored meanwhile (they may arrive before the
   record) are applied. A message in doubt is recorded with its lease expired.
5. Settle (sweep, from beat every CHIPS_SEND_SWEEP_SECONDS): a message whose lease expired (its
   worker died, or its outcome was in doubt) is settled from evidence (settle): WAHA's stored acks,
   then WAHA's own record of the chat (GET /api/{session}/chats/{chat}/messages). Found once: SENT
   with that id. Not there: it never reached WhatsApp, and it is queued again. Several candidates,
   or an engine that cannot be asked: FAILED "may have been delivered" — never sent twice.
   The same sweep gives a new task to queued messages whose task was lost (a broker restart).

A lease is the one liveness mechanism: a live sender renews it at every record (and before a
call when it is about to run short); a dead one lets it expire, CHIPS_SEND_LEASE_SECONDS later.
"""
from __future__ import annotations

import base64
import logging
import mimetypes
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import get_valid_filename
from django.utils.translation import gettext as _
from django_scopes import scope, scopes_disabled

from billing import limits
from billing.models import Reservation
from waha import manager
from waha.client import (
    ContainerUnreachable,
    FeatureUnavailable,
    SessionNotFound,
    Unauthorized,
    WahaError,
    WahaRequestError,
    WahaServerError,
    message_id,
)
from waha.models import WahaSession, WebhookEvent
from whago.bulk import update_rows
from whago.models import Tenant
from whago.tasks import TenantTask, tenant_of_row

from .errors import BatchRefused, SendRefused, never_reached, redacted
from .events import message_changed
from .models import Chip, Message
from .phones import chat_id, normalize_phone

log = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 4096
IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp"}
MAX_BATCH = 1000
SEND_CHUNK = 25
# A send may take as long as the client's timeout: the lease is renewed before a call when less
# than this (or 80 % of the lease, when shorter) is left of it.
CALL_MARGIN = timedelta(seconds=25)
# Acks stored up to this long before a claim may belong to it (the web and worker clocks differ).
EVIDENCE_MARGIN = timedelta(seconds=5)
# Messages WAHA's record is asked for, newest first, when a send is in doubt.
LOOKUP_LIMIT = 50

# Outcomes of Sender.send.
SENT, RETRY, FAILED, IN_DOUBT = "sent", "retry", "failed", "in_doubt"
# What a record writes of a message.
RECORDED_FIELDS = ["status", "waha_id", "sent_at", "error", "failed_at", "next_attempt_at", "attempts",
                   "attempted_at", "lease_token", "leased_until"]


def _now() -> datetime:
    return timezone.now()


def _lease() -> timedelta:
    return timedelta(seconds=settings.CHIPS_SEND_LEASE_SECONDS)


def is_campaign_message(message: Message) -> bool:
    """Messages of a campaign are queued again by their lane, not by the send sweep."""
    return message.source.startswith("campaign:")


# --- 1. queue --------------------------------------------------------------------------------


def _sniff_image(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def media_file(kind: str, file, filename: str | None, mimetype: str | None) -> tuple[ContentFile, str, str]:
    """Validate an uploaded image/document; returns (content, safe file name, mimetype)."""
    if file is None:
        raise SendRefused(_("Attach the file to send."), "invalid")
    content = file.read() if hasattr(file, "read") else bytes(file)
    if not content:
        raise SendRefused(_("The file is empty."), "invalid")
    if len(content) > settings.CHIPS_MAX_MEDIA_BYTES:
        raise SendRefused(
            _("The file is too large: %(size)s MB, the limit is %(limit)s MB.")
            % {"size": round(len(content) / 1048576, 1), "limit": round(settings.CHIPS_MAX_MEDIA_BYTES / 1048576, 1)},
            "invalid",
        )
    name = filename or getattr(file, "name", "") or ("image" if kind == Message.Kind.IMAGE else "document")
    name = get_valid_filename(os.path.basename(str(name)))[:200] or "file"
    if kind == Message.Kind.IMAGE:
        sniffed = _sniff_image(content[:16])
        if sniffed is None:
            raise SendRefused(_("The image must be a JPEG, PNG or WebP file."), "invalid")
        mimetype = sniffed
    else:
        mimetype = (mimetype or getattr(file, "content_type", "") or mimetypes.guess_type(name)[0]
                    or "application/octet-stream")
    return ContentFile(content, name=name), name, mimetype[:100]


def send_message(
    tenant: Tenant,
    chip: Chip,
    to: str,
    *,
    kind: str = Message.Kind.TEXT,
    text: str = "",
    file=None,
    filename: str | None = None,
    mimetype: str | None = None,
    idempotency_key: str | None = None,
    source: str = "portal",
    reservation=None,
) -> tuple[Message, bool]:
    """Queue a message to a phone number through a chip; returns (message, created).

    Counts it against the quota (or uses the caller's `reservation`, e.g. a campaign's
    reservation of n messages), then the worker sends it. The same idempotency key returns
    the message already queued with it instead of a second one.
    """
    if idempotency_key:
        idempotency_key = str(idempotency_key).strip()[:100]
        with scope(tenant=tenant.pk):
            existing = Message.objects.filter(tenant_id=tenant.pk, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    if chip.tenant_id != tenant.pk:
        raise SendRefused(_("Choose one of your chips."), "invalid")
    try:
        peer = normalize_phone(to)
    except ValidationError as exc:
        raise SendRefused(exc.messages[0], "invalid_phone")
    if kind not in Message.Kind.values:
        raise SendRefused(_("Choose text, image or document."), "invalid")
    text = (text or "").strip()
    if len(text) > MAX_TEXT_LENGTH:
        raise SendRefused(_("The text is too long: at most %(max)s characters.") % {"max": MAX_TEXT_LENGTH}, "invalid")
    content = None
    if kind == Message.Kind.TEXT:
        if not text:
            raise SendRefused(_("Write the message text."), "invalid")
    else:
        content, filename, mimetype = media_file(kind, file, filename, mimetype)
    if chip.is_deleted:
        raise SendRefused(_("This chip was deleted."), "chip_not_connected")
    if chip.status != Chip.Status.WORKING:
        raise SendRefused(
            _("The chip %(chip)s is not connected (%(status)s). Connect it before sending.")
            % {"chip": chip.alias, "status": chip.get_status_display()},
            "chip_not_connected",
        )
    saved_name = None
    try:
        with scope(tenant=tenant.pk), transaction.atomic():
            if reservation is None:
                try:
                    reservation = limits.reserve_messages(tenant, 1)
                except limits.QuotaExceeded as exc:
                    raise SendRefused(exc.message, "quota_exceeded")
            message = Message(
                tenant_id=tenant.pk,
                chip=chip,
                direction=Message.Direction.OUT,
                peer=peer,
                kind=kind,
                body=text,
                status=Message.Status.QUEUED,
                reservation=reservation,
                source=source[:40],
            )
            if idempotency_key:
                message.idempotency_key = idempotency_key
            if content is not None:
                message.media.save(content.name, content, save=False)
                saved_name = message.media.name
                message.media_name = filename
                message.media_mimetype = mimetype
            message.save()
            transaction.on_commit(lambda: send_one.delay(message.pk, tenant_id=tenant.pk))
    except IntegrityError:
        if saved_name:
            message.media.storage.delete(saved_name)
        with scope(tenant=tenant.pk):
            existing = Message.objects.filter(tenant_id=tenant.pk, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing, False
    except Exception:
        if saved_name:
            message.media.storage.delete(saved_name)
        raise
    message.chip = chip
    return message, True


def send_messages(
    tenant: Tenant, items: list[dict], *, source: str = "api", reservation=None
) -> list[tuple[Message, bool]]:
    """Queue many text messages at once: all or none (bad items, quota), one reservation, one insert.

    items: [{"chip": Chip id, "to": phone, "text": str, "idempotency_key": optional}].
    Returns (message, created) in the items' order; items whose key was already used give
    the existing message. Refused batches raise BatchRefused or SendRefused (quota).
    """
    if not items:
        raise SendRefused(_("Send at least one message."), "invalid")
    if len(items) > MAX_BATCH:
        raise SendRefused(_("At most %(max)s messages per batch.") % {"max": MAX_BATCH}, "invalid")
    with scope(tenant=tenant.pk):
        chips = {c.pk: c for c in Chip.objects.filter(tenant_id=tenant.pk, pk__in={i.get("chip") for i in items})}
        keys = [str(i["idempotency_key"]).strip()[:100] for i in items if i.get("idempotency_key")]
        existing = {m.idempotency_key: m for m in Message.objects.filter(tenant_id=tenant.pk, idempotency_key__in=keys)}
    errors: dict[int, str] = {}
    new: list[Message] = []
    plan: list[tuple[str, Message | None]] = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        key = str(item.get("idempotency_key") or "").strip()[:100]
        if key and key in existing:
            plan.append((key, existing[key]))
            continue
        if key and key in seen:
            errors[position] = _("This idempotency key is used twice in the batch.")
            continue
        chip = chips.get(item.get("chip"))
        text = (item.get("text") or "").strip()
        try:
            peer = normalize_phone(str(item.get("to") or ""))
        except ValidationError as exc:
            errors[position] = exc.messages[0]
            continue
        if chip is None:
            errors[position] = _("Choose one of your chips.")
        elif chip.status != Chip.Status.WORKING:
            errors[position] = _("The chip %(chip)s is not connected (%(status)s). Connect it before sending.") % {
                "chip": chip.alias, "status": chip.get_status_display()}
        elif not text:
            errors[position] = _("Write the message text.")
        elif len(text) > MAX_TEXT_LENGTH:
            errors[position] = _("The text is too long: at most %(max)s characters.") % {"max": MAX_TEXT_LENGTH}
        if position in errors:
            continue
        message = Message(tenant_id=tenant.pk, chip=chip, direction=Message.Direction.OUT, peer=peer,
                          kind=Message.Kind.TEXT, body=text, status=Message.Status.QUEUED, source=source[:40])
        if key:
            message.idempotency_key = key
            seen.add(key)
        new.append(message)
        plan.append((key, message))
    if errors:
        raise BatchRefused(_("%(count)s message(s) of the batch are invalid; nothing was sent.") % {
            "count": len(errors)}, errors)
    if new:
        try:
            with scope(tenant=tenant.pk), transaction.atomic():
                if reservation is None:
                    try:
                        reservation = limits.reserve_messages(tenant, len(new))
                    except limits.QuotaExceeded as exc:
                        raise SendRefused(exc.message, "quota_exceeded")
                for message in new:
                    message.reservation = reservation
                Message.objects.bulk_create(new)
                ids = [m.pk for m in new]
                # Tasks of up to SEND_CHUNK messages: one worker sends them one after another.
                chunks = [ids[i:i + SEND_CHUNK] for i in range(0, len(ids), SEND_CHUNK)]
                transaction.on_commit(lambda: [send_many.delay(chunk, tenant_id=tenant.pk) for chunk in chunks])
        except IntegrityError:
            # Another request used one of these keys a moment ago: nothing of this batch was kept.
            raise SendRefused(_("Some idempotency keys were used by another request meanwhile; send again."),
                              "conflict")
    created = {id(m) for m in new}
    return [(message, id(message) in created) for _key, message in plan]


# --- 2-4. claim, hand over, record ----------------------------------------------------------------


def _backoff(attempt: int) -> float:
    return min(settings.CHIPS_SEND_BACKOFF_SECONDS * (2 ** max(0, attempt - 1)), 600.0)


def _unsendable_reason(chip: Chip) -> str | None:
    if chip.is_deleted:
        return _("the chip was deleted")
    if chip.waha_session_id is None or not chip.can(Chip.Action.SEND):
        return _("the chip is not connected (%(status)s)") % {"status": chip.get_status_display()}
    return None


def _call_waha(message: Message, session: WahaSession) -> dict:
    target = chat_id(message.peer)
    if message.kind == Message.Kind.TEXT:
        return manager.send_text(session, target, message.body)
    with message.media.open("rb") as handle:
        data = base64.b64encode(handle.read()).decode()
    file = {"mimetype": message.media_mimetype, "filename": message.media_name, "data": data}
    if message.kind == Message.Kind.IMAGE:
        return manager.send_image(session, target, file, message.body or None)
    return manager.send_file(session, target, file, message.body or None)


def _sent(message: Message, waha_id: str, at: datetime) -> None:
    message.status, message.waha_id, message.sent_at = Message.Status.SENT, waha_id[:200], at
    message.error, message.next_attempt_at = "", None
    message.lease_token = message.leased_until = None


def _failed(message: Message, reason: str, handed: bool = False) -> None:
    """FAILED with the reason; unless it may have been handed to WhatsApp, as if never attempted (a
    late ack cannot adopt it, and its quota goes back when recorded)."""
    message.status, message.error, message.failed_at = Message.Status.FAILED, reason[:2000], _now()
    message.next_attempt_at = None
    message.lease_token = message.leased_until = None
    if not handed:
        message.attempted_at = None


def _retry(message: Message, reason: str) -> str:
    """QUEUED again after a backoff, or FAILED when out of attempts (it never reached WhatsApp)."""
    if message.attempts >= settings.CHIPS_SEND_MAX_ATTEMPTS:
        _failed(message, _("Not sent after %(attempts)s attempts: %(reason)s") % {
            "attempts": message.attempts, "reason": reason})
        return FAILED
    message.error = reason[:2000]
    message.next_attempt_at = _now() + timedelta(seconds=_backoff(message.attempts))
    message.attempted_at = message.lease_token = message.leased_until = None
    return RETRY


def _in_doubt(message: Message, reason: str) -> str:
    """Still QUEUED, its lease expired at once: the sweep settles it from evidence."""
    message.error = reason[:2000]
    message.leased_until = _now()
    return IN_DOUBT


def hand_over(message: Message, session: WahaSession | None) -> str:
    """Hand one leased message to WAHA; sets its outcome's fields (not saved) and returns the outcome."""
    chip = message.chip
    problem = _unsendable_reason(chip) if session is not None else _("the chip is not connected")
    if problem:
        return _retry(message, problem)
    try:
        sent = _call_waha(message, session)
    except ContainerUnreachable as exc:
        if never_reached(exc):
            return _retry(message, _("the chip's server is unreachable (%(error)s)") % {
                "error": redacted(chip, exc)})
        return _in_doubt(message, _("WhatsApp's server did not answer in time (%(error)s)") % {
            "error": redacted(chip, exc)})
    except (WahaServerError, SessionNotFound, Unauthorized) as exc:
        return _retry(message, _("the chip's server refused the message (%(error)s)") % {
            "error": redacted(chip, exc)})
    except FeatureUnavailable:
        _failed(message, _("This chip's WhatsApp server (WAHA Core) cannot send images or files: send text only."))
        return FAILED
    except WahaRequestError as exc:
        if exc.status == 422:  # the session is not WORKING right now: it may come back
            return _retry(message, _("the chip is not ready (%(error)s)") % {"error": redacted(chip, exc)})
        _failed(message, _("WhatsApp refused the message: %(error)s") % {"error": redacted(chip, exc)})
        return FAILED
    if settings.CHIPS_SEND_PAUSE_AFTER_HTTP:
        time.sleep(settings.CHIPS_SEND_PAUSE_AFTER_HTTP)
    _sent(message, message_id(sent), _now())
    return SENT


def write_outcomes(messages: list[Message], token: uuid.UUID) -> int:
    """Write the RECORDED_FIELDS of the messages still leased with token, in one statement; returns how many."""
    return update_rows(Message.objects.filter(lease_token=token), messages, RECORDED_FIELDS)


class Sender:
    """Claims messages with a lease, hands them to WAHA one by one and records their outcomes in batches.

    Use as a context manager: leaving it records what is left and gives back the leases of the
    messages it holds but did not hand over (release). on_record(messages), when given, runs inside
    each record's transaction with the messages recorded (the campaign lanes settle their recipients).
    """

    def __init__(self, on_record: Callable[[list[Message]], None] | None = None):
        self.token = uuid.uuid4()
        self.on_record = on_record
        self.held: dict[int, Message] = {}  # leased by this sender, outcome not recorded
        self.outcomes: list[tuple[Message, str]] = []  # (message, status before), to record
        self.recorded_at = time.monotonic()
        self.lease_until: datetime | None = None

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.record(renew=False)
        finally:
            self.release(list(self.held.values()))

    def lease_fields(self) -> dict[str, Any]:
        """The fields of a message created already claimed by this sender (a campaign's messages)."""
        now = _now()
        self.lease_until = now + _lease()
        return {"lease_token": self.token, "leased_until": self.lease_until, "attempted_at": now, "attempts": 1}

    def hold(self, messages: list[Message]) -> None:
        """Messages created with lease_fields(): this sender holds them."""
        self.held.update((m.pk, m) for m in messages)

    def claim(self, ids: list[int]) -> list[Message]:
        """Lease the given messages that are QUEUED and leased by nobody (one UPDATE, committed);
        returns them in the order of ids."""
        now = _now()
        until = now + _lease()
        taken = Message.objects.filter(
            pk__in=ids, direction=Message.Direction.OUT, status=Message.Status.QUEUED, lease_token__isnull=True,
        ).update(lease_token=self.token, leased_until=until, attempted_at=now, attempts=F("attempts") + 1)
        if not taken:
            return []
        found = {m.pk: m for m in Message.objects.select_related(
            "tenant", "chip__waha_session__container").filter(pk__in=ids, lease_token=self.token)}
        self.lease_until = until
        self.held.update(found)
        return [found[pk] for pk in ids if pk in found]

    def send(self, message: Message, session: WahaSession | None) -> str:
        """Hand a held message to WAHA; its outcome is recorded with the next batch."""
        if self.lease_until is not None and self.lease_until - _now() < min(CALL_MARGIN, _lease() * 0.8):
            self.record(renew=True)
        old = message.status
        outcome = hand_over(message, session)
        self.outcomes.append((message, old))
        self.held.pop(message.pk, None)
        if (len(self.outcomes) >= settings.CHIPS_SEND_RECORD_EVERY
                or time.monotonic() - self.recorded_at >= settings.CHIPS_SEND_RECORD_SECONDS):
            self.record()
        return outcome

    def record(self, renew: bool = True) -> None:
        """Write the outcomes kept in memory (one UPDATE), renew the leases still held, apply early acks."""
        outcomes, self.outcomes = self.outcomes, []
        self.recorded_at = time.monotonic()
        if not outcomes and not (renew and self.held):
            return
        messages = [message for message, _old in outcomes]
        with transaction.atomic():
            if messages:
                written = write_outcomes(messages, self.token)
                if written < len(messages):
                    # This sender was stalled past its lease and a sweep settled some of them from
                    # evidence meanwhile: what the sweep wrote stands.
                    log.warning("%s outcome(s) not recorded: their lease had expired", len(messages) - written)
                _give_back_quota([m for m in messages if m.status == Message.Status.FAILED and m.attempted_at is None])
            if renew and self.held:
                self.lease_until = _now() + _lease()
                Message.objects.filter(pk__in=list(self.held), lease_token=self.token).update(
                    leased_until=self.lease_until)
            if messages and self.on_record is not None:
                self.on_record(messages)
            applied = apply_stored_acks([m for m in messages if m.status == Message.Status.SENT])
        for message, old in outcomes:
            if message.pk not in applied and message.status != old:
                _announce(message, old)

    def release(self, messages: list[Message]) -> None:
        """Give back held messages never handed to WAHA: QUEUED and free again, the attempt not counted."""
        if not messages:
            return
        Message.objects.filter(pk__in=[m.pk for m in messages], lease_token=self.token,
                               status=Message.Status.QUEUED).update(
            lease_token=None, leased_until=None, attempted_at=None, attempts=F("attempts") - 1)
        for message in messages:
            self.held.pop(message.pk, None)
            message.lease_token = message.leased_until = message.attempted_at = None
            message.attempts -= 1


def _announce(message: Message, old_status: str) -> None:
    try:
        message_changed(message, old_status)
    except Exception:  # an announcement lost must not undo or stop the sends
        log.exception("could not announce message %s as %s", message.pk, message.status)


def _give_back_quota(messages: list[Message]) -> None:
    """The quota of messages that certainly were not sent goes back to their reservations."""
    counts: dict[int, int] = defaultdict(int)
    for message in messages:
        if message.reservation_id:
            counts[message.reservation_id] += 1
    if not counts:
        return
    for reservation in Reservation.objects.select_related("tenant").filter(pk__in=list(counts)):
        limits.release_reservation(reservation, counts[reservation.pk])


def deliver(message_ids: list[int]) -> dict[int, float]:
    """Send queued messages, each exactly once, in one claim; returns {id: seconds before its retry}."""
    retries: dict[int, float] = {}
    with Sender() as sender:
        for message in sender.claim(message_ids):
            if sender.send(message, message.chip.waha_session) == RETRY:
                retries[message.pk] = max(0.0, (message.next_attempt_at - _now()).total_seconds())
    return retries


# --- acks -------------------------------------------------------------------------------------------

ACK_STATUS = {1: Message.Status.SENT, 2: Message.Status.DELIVERED, 3: Message.Status.READ, 4: Message.Status.READ}


def advance(message: Message, ack: int, ack_name: str = "") -> bool:
    """Move an outgoing message forward on WAHA's ack (a negative ack fails it); True when it changed.

    Conditional: of two acks racing, only the one that moves the message forward writes."""
    now = _now()
    old = message.status
    if ack < 0:
        if old not in (Message.Status.QUEUED, Message.Status.SENT):
            return False
        reason = _("WhatsApp could not deliver the message (%(ack)s).") % {"ack": ack_name or "ERROR"}
        updates: dict[str, Any] = {"status": Message.Status.FAILED, "error": reason, "failed_at": now}
        lower = [Message.Status.QUEUED, Message.Status.SENT]
    else:
        new = ACK_STATUS.get(ack)
        if new is None or Message.PROGRESS.get(old, 99) >= Message.PROGRESS[new]:
            return False  # a repeated or late ack: the message is already there or further
        lower = [status for status, rank in Message.PROGRESS.items() if rank < Message.PROGRESS[new]]
        updates = {"status": new}
        if new == Message.Status.SENT:
            updates["sent_at"] = message.sent_at or now
        if new in (Message.Status.DELIVERED, Message.Status.READ):
            updates["delivered_at"] = message.delivered_at or now
        if new == Message.Status.READ:
            updates["read_at"] = now
    if not Message.objects.filter(pk=message.pk, status__in=lower).update(**updates):
        return False
    for field, value in updates.items():
        setattr(message, field, value)
    _announce(message, old)
    return True


def _stored_acks(session: WahaSession, since: datetime, prefix: str = "",
                 ids: list[str] | None = None) -> dict[str, tuple[int, str]]:
    """{WAHA message id: (furthest ack, its name)} of the message.ack events stored for a session since
    a moment, for the given ids or those starting with prefix (filtered by the database)."""
    found: dict[str, tuple[int, str]] = {}
    events = WebhookEvent.objects.filter(
        container_id=session.container_id, session=session.remote_name, event="message.ack",
        received_at__gte=since - EVIDENCE_MARGIN,
    )
    if ids is not None:
        events = events.filter(payload__payload__id__in=ids)
    elif prefix:
        events = events.filter(payload__payload__id__startswith=prefix)
    bodies = events.values_list("payload", flat=True)
    for body in bodies:
        payload = body.get("payload") if isinstance(body, dict) else None
        waha_id = str((payload or {}).get("id") or "")
        if not waha_id.startswith(prefix) or not waha_id:
            continue
        try:
            ack = int(payload.get("ack") or 0)
        except (TypeError, ValueError):
            continue
        best = found.get(waha_id)
        if best is None or ack < 0 or (best[0] >= 0 and ack > best[0]):
            found[waha_id] = (ack, str(payload.get("ackName") or ""))
    return found


def apply_stored_acks(messages: list[Message]) -> set[int]:
    """Acks WAHA sent before the messages' record committed (stored, unmatched then) applied now.

    Called after the record, in its transaction: an ack stored before this reads is applied here, one
    stored after finds the message recorded (inbox.apply_ack looks again once its event committed).
    Returns the ids of the messages that changed (and were announced)."""
    by_session: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        if message.waha_id and message.chip.waha_session_id:
            by_session[message.chip.waha_session_id].append(message)
    changed: set[int] = set()
    if not by_session:
        return changed
    known = {m.chip.waha_session_id: m.chip.waha_session for m in messages
             if m.chip.waha_session_id and Chip.waha_session.is_cached(m.chip)}
    missing = set(by_session) - set(known)
    if missing:
        known.update(WahaSession.objects.in_bulk(list(missing)))
    for session_id, group in by_session.items():
        session = known.get(session_id)
        if session is None:
            continue
        acks = _stored_acks(session, min(m.attempted_at or m.sent_at for m in group),
                            ids=[m.waha_id for m in group])
        for message in group:
            if message.waha_id in acks:
                ack, name = acks[message.waha_id]
                if advance(message, ack, name):
                    changed.add(message.pk)
    return changed


# --- 5. settle and sweep ----------------------------------------------------------------------------


def _taken_ids(chip_id: int, waha_ids: list[str]) -> set[str]:
    return set(Message.objects.filter(chip_id=chip_id, direction=Message.Direction.OUT,
                                      waha_id__in=waha_ids).values_list("waha_id", flat=True))


def _from_stored_acks(message: Message, session: WahaSession) -> tuple[str, int, str] | None:
    """(WAHA id, ack, ack name) when exactly one unclaimed sent id to the chat was acked since the claim."""
    acks = _stored_acks(session, message.attempted_at, prefix=f"true_{chat_id(message.peer)}_")
    candidates = [waha_id for waha_id in acks if waha_id not in _taken_ids(message.chip_id, list(acks))]
    if len(candidates) != 1:
        return None
    waha_id = candidates[0]
    return waha_id, *acks[waha_id]


def _from_waha_record(message: Message, session: WahaSession) -> list[dict]:
    """The messages this chip sent to the chat since the claim, as WAHA itself records them, that
    match the message and no other of ours. Raises WahaError when WAHA cannot be asked."""
    listed = manager.chat_messages(session, chat_id(message.peer), limit=LOOKUP_LIMIT)
    since = (message.attempted_at - timedelta(minutes=1)).timestamp()
    mine = [item for item in listed
            if item.get("fromMe") and str(item.get("id") or "") and float(item.get("timestamp") or 0) >= since]
    if message.kind == Message.Kind.TEXT:
        mine = [item for item in mine if (item.get("body") or "") == message.body]
    else:
        mine = [item for item in mine if item.get("hasMedia")]
    taken = _taken_ids(message.chip_id, [str(item["id"]) for item in mine])
    return [item for item in mine if str(item["id"]) not in taken]


def _may_have_been_delivered() -> str:
    return _("Sending was interrupted after the message was handed to WhatsApp, so it may have been "
             "delivered. It was not sent again to avoid a duplicate: check the conversation.")


def settle(message_id_: int) -> str | None:
    """Settle a message whose lease expired, from evidence; returns SENT, FAILED, RETRY (queued again,
    it never reached WhatsApp) or None (nothing to do now: held by a live sender, or WAHA cannot be
    asked yet: the next sweep tries again). Run in the message's tenant's scope (sweep, dispatch.recover)."""
    now = _now()
    token = uuid.uuid4()
    # The settler takes the lease: a late record of the dead sender no longer writes.
    if not Message.objects.filter(pk=message_id_, status=Message.Status.QUEUED, lease_token__isnull=False,
                                  leased_until__lt=now).update(lease_token=token, leased_until=now + _lease()):
        return None
    message = Message.objects.select_related("tenant", "chip").get(pk=message_id_)
    session = (WahaSession.objects.select_related("container").filter(pk=message.chip.waha_session_id).first()
               if message.chip.waha_session_id else None)
    old = message.status
    outcome = _judge(message, session)
    if outcome is None:
        Message.objects.filter(pk=message.pk, lease_token=token).update(leased_until=now)
        return None
    with transaction.atomic():
        write_outcomes([message], token)
        if outcome == FAILED and message.attempted_at is None:
            _give_back_quota([message])  # it never reached WhatsApp
        if outcome == SENT:
            apply_stored_acks([message])
        if outcome == RETRY and not is_campaign_message(message):
            transaction.on_commit(lambda: send_one.delay(message.pk, tenant_id=message.tenant_id))
    if message.status != old:
        _announce(message, old)
    log.info("message %s settled from evidence: %s", message.pk, outcome)
    return outcome


def _judge(message: Message, session: WahaSession | None) -> str | None:
    """What the evidence says of an interrupted send; sets the message's fields accordingly."""
    if session is not None:
        acked = _from_stored_acks(message, session)
        if acked is not None:
            waha_id, ack, _name = acked
            if ack < 0:
                _failed(message, _("WhatsApp could not deliver the message (%(ack)s).") % {"ack": _name or "ERROR"},
                        handed=True)
                message.waha_id = waha_id[:200]
                return FAILED
            _sent(message, waha_id, message.attempted_at)
            return SENT
        try:
            found = _from_waha_record(message, session)
        except FeatureUnavailable:
            found = None  # this engine keeps no record to ask: nothing can be proven
        except WahaError as exc:
            log.info("message %s: WAHA's record of the chat cannot be read now (%r)", message.pk, exc)
            give_up = message.attempted_at + timedelta(seconds=settings.CHIPS_SEND_SETTLE_GIVE_UP_SECONDS)
            if _now() < give_up:
                return None  # WAHA unreachable or the session not ready: ask again later
            found = None
        if found is not None and len(found) == 1:
            _sent(message, str(found[0]["id"]), message.attempted_at)
            return SENT
        if found == []:
            # Not in WhatsApp's record of the chat: it never got there. Sent again (the attempt counts).
            message.lease_token = message.leased_until = message.attempted_at = None
            message.next_attempt_at = _now()
            message.error = _("the previous attempt was interrupted before WhatsApp got the message")
            if message.attempts >= settings.CHIPS_SEND_MAX_ATTEMPTS:
                _failed(message, _("Not sent after %(attempts)s attempts: %(reason)s") % {
                    "attempts": message.attempts, "reason": message.error})
                return FAILED
            return RETRY
    _failed(message, _may_have_been_delivered(), handed=True)
    return FAILED


def sweep(limit: int = 500) -> dict[str, int]:
    """Beat: settle the sends whose lease expired; give a task to queued messages whose task was lost.

    Cross-tenant: the rows are found with the guard off, each settled in its tenant's scope."""
    now = _now()
    counts = {"settled": 0, "requeued": 0}
    cutoff = now - timedelta(seconds=settings.CHIPS_SEND_REQUEUE_SECONDS)
    with scopes_disabled():  # a sweep over every tenant's messages
        expired = list(Message.objects.filter(status=Message.Status.QUEUED, leased_until__lt=now)
                       .order_by("leased_until").values_list("pk", "tenant_id")[:limit])
        for message_id_, tenant_id in expired:
            try:
                with scope(tenant=tenant_id):
                    outcome = settle(message_id_)
            except Exception:  # noqa: BLE001 - one bad row must not stop the sweep; logged
                log.exception("message %s not settled", message_id_)
                continue
            if outcome is not None:
                counts["settled"] += 1
        lost = list(
            Message.objects.filter(status=Message.Status.QUEUED, leased_until__isnull=True,
                                   direction=Message.Direction.OUT)
            .filter(Q(next_attempt_at__lt=cutoff) | Q(next_attempt_at__isnull=True, created_at__lt=cutoff))
            .exclude(source__startswith="campaign:")
            .values_list("pk", "tenant_id")[:limit]
        )
        if lost:
            # Marked as given a task now: the next sweeps leave them alone for a while.
            Message.objects.filter(pk__in=[pk for pk, _tenant in lost]).update(
                next_attempt_at=now + timedelta(seconds=1))
    by_tenant: dict[int, list[int]] = defaultdict(list)
    for pk, tenant_id in lost:
        by_tenant[tenant_id].append(pk)
    for tenant_id, ids in by_tenant.items():
        for start in range(0, len(ids), SEND_CHUNK):
            send_many.delay(ids[start:start + SEND_CHUNK], tenant_id=tenant_id)
    counts["requeued"] = len(lost)
    return counts


# --- tasks ------------------------------------------------------------------------------------------
# Each send task works for one tenant (TenantTask: queued with tenant_id=, run in its scope). One
# queued in its old form (no tenant_id) before a deploy runs in the tenant of the message it names.


def _retry_later(tenant: Tenant, retries: dict[int, float]) -> None:
    for pk, wait in retries.items():
        send_one.apply_async((pk,), {"tenant_id": tenant.pk}, countdown=wait)


@shared_task(base=TenantTask, name="chips.tasks.send_message", acks_late=True,
             legacy_tenant=tenant_of_row(Message.objects))
def send_one(tenant: Tenant, message_id_: int) -> None:
    """Send one queued message; schedules its own retry with backoff while the chip cannot send."""
    _retry_later(tenant, deliver([message_id_]))


@shared_task(base=TenantTask, name="chips.tasks.send_messages", acks_late=True,
             legacy_tenant=tenant_of_row(Message.objects))
def send_many(tenant: Tenant, message_ids: list[int]) -> None:
    """Send several queued messages of the tenant one after another, each exactly once (an old-form
    task's messages of another tenant are left QUEUED: the sweep gives them a task of their own)."""
    _retry_later(tenant, deliver(message_ids))


@shared_task(name="chips.tasks.sweep_sends", expires=30)
def sweep_sends() -> dict[str, int]:
    """Beat: settle interrupted sends from evidence; give a task to queued messages whose task was lost."""
    return sweep()
