"""Messages from WAHA, and reading them: a contact's message stored once, an ack moving an outgoing
message forward, the conversations of the inbox and the message lists' filters.

    record_inbound(tenant, session_name, payload) -> Message | None    a 'message' event, stored once
    apply_ack(tenant, session_name, waha_id, ack, payload)             a 'message.ack' event
    conversations(tenant, chip=, page=) / peer_name(tenant, peer)      the inbox
    mark_read(chip, peer) / unread_count(tenant)                       read marks, the menu's badge
    filter_messages(queryset, ...)                                     the list filters (portal and API)
"""
from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta

from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.utils import timezone
from django_scopes import scope

from waha.client import push_name
from whago.models import Tenant

from . import inbound_media, outgoing, sending, signals
from .events import message_data
from .models import Chip, Contact, Message
from .phones import normalize_phone, phone_from_chat_id

log = logging.getLogger(__name__)


def _now() -> datetime:
    return timezone.now()


def _alive_chip(tenant: Tenant, session_name: str) -> Chip | None:
    return Chip.objects.select_related("tenant").filter(tenant_id=tenant.pk, session_name=session_name).first()


def _chip_id_of(tenant_id: int, session_name: str) -> int | None:
    """The id of the tenant's chip with this WAHA session (a name given once, never reused)."""
    key = f"chips:session-chip:{tenant_id}:{session_name}"
    chip_id = caches["local"].get(key)
    if chip_id is None:
        with scope(tenant=tenant_id):
            found = list(Chip.all_objects.filter(
                tenant_id=tenant_id, session_name=session_name).values_list("pk", flat=True)[:1])
        if not found:
            return None
        chip_id = found[0]
        caches["local"].set(key, chip_id, 3600)
    return chip_id


def apply_ack(tenant: Tenant, session_name: str, waha_message_id: str, ack: int, payload: dict) -> Message | None:
    """Move an outgoing message forward on a message.ack event; returns it when it changed.

    An ack may arrive before its sender recorded WAHA's id (the sender records in batches): the
    event is stored either way, and once it is committed the message is looked up again; a sender
    that records later applies the stored acks itself (chips.sending.apply_stored_acks).
    """
    if not waha_message_id:
        return None
    chip_id = _chip_id_of(tenant.pk, session_name)
    if chip_id is None:
        return None
    ack_name = str(payload.get("ackName") or "")
    message = _ack_target(tenant.pk, chip_id, waha_message_id)
    if message is None:
        if payload.get("fromMe", True) is not False:
            transaction.on_commit(lambda: _apply_late_ack(tenant.pk, chip_id, waha_message_id, ack, ack_name))
        return None
    message.tenant = tenant
    with scope(tenant=tenant.pk):
        return message if sending.advance(message, ack, ack_name) else None


def _ack_target(tenant_id: int, chip_id: int, waha_message_id: str) -> Message | None:
    # The same WhatsApp id reported by another chip's session is another message: looked up per chip.
    with scope(tenant=tenant_id):
        outgoing_messages = Message.objects.filter(chip_id=chip_id, direction=Message.Direction.OUT).order_by()
        message = next(iter(outgoing_messages.filter(waha_id=waha_message_id)[:1]), None)
        return message or _adopt_interrupted(outgoing_messages, waha_message_id)


def _apply_late_ack(tenant_id: int, chip_id: int, waha_message_id: str, ack: int, ack_name: str) -> None:
    """The second look, once the ack's event is committed: a sender whose record committed before
    this finds nothing stored when it looked, and this finds its message (in the tenant's scope: the
    webhook's has ended by then)."""
    with scope(tenant=tenant_id):
        message = _ack_target(tenant_id, chip_id, waha_message_id)
        if message is not None:
            sending.advance(message, ack, ack_name)


def _peer_of_sent_id(waha_id: str) -> str | None:
    """The E.164 number a message WAHA sent went to, from its serialized id (true_<chat>_<id>)."""
    if not waha_id.startswith("true_") or waha_id.count("_") < 2:
        return None
    try:
        return phone_from_chat_id(waha_id.split("_", 2)[1])
    except ValidationError:
        return None


def _adopt_interrupted(outgoing, waha_id: str) -> Message | None:
    """An ack for a message that failed as interrupted (handed to WAHA, its id never recorded): when
    it is the only such message to that number, the ack is the evidence that it was sent, and the
    message takes the id (SENT; the ack then moves it on). Nothing is guessed between several."""
    peer = _peer_of_sent_id(waha_id)
    if peer is None:
        return None
    since = _now() - timedelta(days=1)
    candidates = list(outgoing.filter(status=Message.Status.FAILED, waha_id="", attempted_at__isnull=False,
                                      peer=peer, failed_at__gte=since)[:2])
    if len(candidates) != 1:
        return None
    message = candidates[0]
    adopted = Message.objects.filter(pk=message.pk, status=Message.Status.FAILED, waha_id="").update(
        waha_id=waha_id[:200], status=Message.Status.SENT, error="", failed_at=None, sent_at=message.attempted_at)
    if not adopted:
        return None
    log.info("interrupted message %s settled by a later ack of WAHA", message.pk)
    message.refresh_from_db()
    return message


def record_inbound(tenant: Tenant, session_name: str, payload: dict) -> Message | None:
    """Store a message a contact sent to a chip (once per WhatsApp id); returns it when new."""
    if payload.get("fromMe"):
        return None
    try:
        peer = phone_from_chat_id(str(payload.get("from") or ""))
    except ValidationError:
        return None  # groups, broadcasts and status updates are not conversations
    waha_id = str(payload.get("id") or "")[:200]
    with scope(tenant=tenant.pk):
        chip = _alive_chip(tenant, session_name)
        if chip is None:
            return None
        if waha_id and Message.objects.filter(chip=chip, direction=Message.Direction.IN, waha_id=waha_id).exists():
            return None
        media = payload.get("media") if isinstance(payload.get("media"), dict) else {}
        has_media, media_url = inbound_media.expected(payload)
        kind = Message.Kind.TEXT
        if has_media:
            # SVG is a document: served inline from our origin it could run scripts.
            mimetype = str(media.get("mimetype") or "")
            is_image = mimetype.startswith("image/") and "svg" not in mimetype
            kind = Message.Kind.IMAGE if is_image else Message.Kind.DOCUMENT
        sent_at = None
        with contextlib.suppress(TypeError, ValueError, OverflowError, OSError):
            sent_at = datetime.fromtimestamp(int(payload.get("timestamp")), tz=UTC)
        try:
            with transaction.atomic():
                message = Message.objects.create(
                    tenant_id=tenant.pk,
                    chip=chip,
                    direction=Message.Direction.IN,
                    peer=peer,
                    peer_name=push_name(payload)[:128],
                    kind=kind,
                    body=str(payload.get("body") or ""),
                    media_name=str(media.get("filename") or "")[:200],
                    media_mimetype=str(media.get("mimetype") or "")[:100],
                    status=Message.Status.RECEIVED,
                    waha_id=waha_id,
                    sent_at=sent_at,
                    source="whatsapp",
                    # A file the server could not give (Core, download off, failed): said in the thread.
                    error=inbound_media.UNAVAILABLE if has_media and not media_url else "",
                )
        except IntegrityError:
            return None
        if media_url:
            message_pk = message.pk
            transaction.on_commit(lambda: inbound_media.fetch_inbound_media.delay(message_pk, media_url,
                                                                                   tenant_id=tenant.pk))
        outgoing.emit(tenant.pk, "message.received", message_data(message))
        with scope(tenant=tenant):
            signals.message_received.send(sender=Message, message=message, chip=chip, tenant=tenant)
        return message


# --- reading --------------------------------------------------------------------------


def conversations(tenant: Tenant, *, chip: Chip | None = None, page=1, per_page: int = 50):
    """The tenant's conversations (one per chip and phone number) on its live chips, the most recent first.

    Returns a page (django.core.paginator.Page) whose rows are dicts: chip, peer, last (the last Message),
    last_at, total, unread (received messages not opened in the inbox yet), name (the contact's name, else
    the WhatsApp name the number last sent), contact_pk. Three queries whatever the number of conversations:
    the count, the page of (chip, number) groups, their last messages with the names.
    """
    with scope(tenant=tenant.pk):
        groups = Message.objects.filter(tenant_id=tenant.pk, chip__deleted_at__isnull=True)
        if chip is not None:
            groups = groups.filter(chip_id=chip.pk)
        groups = (
            groups.values("chip_id", "peer")
            .annotate(last_pk=Max("pk"), last_at=Max("created_at"), total=Count("pk"),
                      unread=Count("pk", filter=Q(direction=Message.Direction.IN, read_at__isnull=True)))
            .order_by("-last_at", "-last_pk")
        )
        result = Paginator(groups, per_page).get_page(page)
        rows = list(result.object_list)
        contact = Contact.objects.filter(tenant_id=tenant.pk, phone=OuterRef("peer"))
        pushed = _push_names(tenant, OuterRef("peer"))[:1]
        last = (
            Message.objects.filter(pk__in=[row["last_pk"] for row in rows]).select_related("chip")
            .annotate(contact_pk=Subquery(contact.values("pk")[:1]), contact_name=Subquery(contact.values("name")[:1]),
                      pushed_name=Subquery(pushed))
            .in_bulk()
        )
    for row in rows:
        message = last[row["last_pk"]]
        row.update(last=message, chip=message.chip, contact_pk=message.contact_pk,
                   name=message.contact_name or message.pushed_name or "")
    result.object_list = rows
    return result


def peer_name(tenant: Tenant, peer: str) -> tuple[str, int | None]:
    """(name, contact id) of a phone number: the contact's name, else the WhatsApp name it last sent."""
    with scope(tenant=tenant.pk):
        contact = Contact.objects.filter(tenant_id=tenant.pk, phone=peer).values_list("name", "pk").first()
        if contact and contact[0]:
            return contact
        pushed = _push_names(tenant, peer).first()
    return (pushed or {}).get("peer_name", ""), contact[1] if contact else None


def _push_names(tenant: Tenant, peer):
    """The WhatsApp names a number sent with its messages, the latest first."""
    return (
        Message.objects.filter(tenant_id=tenant.pk, peer=peer, direction=Message.Direction.IN)
        .exclude(peer_name="").order_by("-created_at", "-pk").values("peer_name")
    )


def mark_read(chip: Chip, peer: str) -> int:
    """The received messages of a conversation are read (opened in the inbox); returns how many changed."""
    with scope(tenant=chip.tenant_id):
        return Message.objects.filter(chip_id=chip.pk, peer=peer, direction=Message.Direction.IN,
                                      read_at__isnull=True).update(read_at=timezone.now())


def unread_count(tenant: Tenant) -> int:
    """Received messages of the tenant's live chips not opened in the inbox yet (the menu's badge)."""
    with scope(tenant=tenant.pk):
        return Message.objects.filter(tenant_id=tenant.pk, direction=Message.Direction.IN, read_at__isnull=True,
                                      chip__deleted_at__isnull=True).count()


def filter_messages(queryset, *, chip=None, status=None, direction=None, peer=None, since=None, until=None):
    """Messages narrowed by the list filters shared by the portal and the API (dates inclusive)."""
    if chip:
        queryset = queryset.filter(chip=chip)
    if status:
        queryset = queryset.filter(status=status)
    if direction:
        queryset = queryset.filter(direction=direction)
    if peer:
        try:
            queryset = queryset.filter(peer=normalize_phone(peer))
        except ValidationError:
            digits = "".join(ch for ch in str(peer) if ch.isdigit())
            queryset = queryset.filter(peer__contains=digits) if digits else queryset.none()
    if since:
        queryset = queryset.filter(created_at__date__gte=since)
    if until:
        queryset = queryset.filter(created_at__date__lte=until)
    return queryset
