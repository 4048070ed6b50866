"""Chips and messages: the operations the portal, the API, the tasks and the receivers call.

Chips
    create_chip(tenant, alias) -> Chip           plan limit checked under the tenant row lock
    connect(chip) / request_pairing_code(chip, phone) / qr_png(chip)
    disconnect(chip) (logout + stop) / restart(chip) / rename(chip, alias) / delete_chip(chip)

Messages
    send_message(tenant, chip, to, ...) -> (Message, created)
        Normalises the number, checks the chip and the quota (billing.limits), stores the
        message QUEUED and enqueues the send task on commit. Idempotent per idempotency key.
    deliver(message_id) -> seconds before a retry, or None          (the send task's body)
    deliver_many(message_ids) -> {id: seconds before a retry}       (the batch task's body)
    attempt(message, session, claim)            the claimed send
    Sender()                                    claim + attempt for runs of sends (batch tasks,
                                                campaign lanes): one statement per message

Never sending twice. `deliver` first claims the message (attempted_at, a conditional
UPDATE committed durably at once, which also takes the message's sender lock: a PostgreSQL
advisory lock held by the sender's connection), then calls WAHA, records SENT with WAHA's id
(committed without waiting for the WAL flush: the claim before it is durable) and lets the
lock go. If the worker dies after WAHA accepted the message but before that record commits,
its connection and lock go with it, and the redelivered task finds attempted_at set without
a WAHA id and nobody holding the lock. WAHA has no lookup by a client key, so WHAGO does not
guess: the message is marked FAILED with a reason saying it may have been sent, it is NOT
sent again, and its quota stays counted. (Without the locks, on the embedded SQLite, a claim
is judged interrupted only once older than any call to WAHA can last.) A Sender keeps the
same rule with fewer statements: the SENT record travels with the next message's claim (and
is as durable), and the lock is let go by the statement after, once the record is committed.
Attempts that provably never reached WAHA (connection refused, 5xx, session not ready)
clear the mark and are retried with backoff; after CHIPS_SEND_MAX_ATTEMPTS the message is
FAILED with the reason and its quota is given back.

Acks. message.ack events move a message forward only (SENT → DELIVERED → READ, or FAILED
before delivery); a duplicated or late ack changes nothing. An ack can arrive before the
sending task has recorded WAHA's id: the receiver then waits on the sender locks of the
chip's in-flight sends to that chat, so it sees the id once the sender commits.
"""
from __future__ import annotations

import base64
import contextlib
import logging
import mimetypes
import os
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import urllib3
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.paginator import Paginator
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.text import get_valid_filename
from django.utils.translation import gettext as _
from django_scopes import scope, scopes_disabled

from billing import limits
from proxies import services as proxy_services
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
    push_name,
)
from waha.models import WahaSession, WebhookEvent
from waha.signals import RetryLater
from whago import services as accounts
from whago.models import Tenant

from . import inbound_media, outgoing, signals
from .models import Chip, Contact, Message
from .phones import chat_id, normalize_phone, phone_from_chat_id

log = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 4096
IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp"}
ACK_STATUS = {1: Message.Status.SENT, 2: Message.Status.DELIVERED, 3: Message.Status.READ, 4: Message.Status.READ}


class ChipError(Exception):
    """An operation on a chip or a message was refused; .message says why, in the user's language."""

    code = "chip_error"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class ChipLimitReached(ChipError):
    code = "chip_limit"


class ContainerUnavailable(ChipError):
    code = "container_unavailable"


class ChipNotReady(ChipError):
    code = "chip_not_ready"


class SenderBusy(ChipError, RetryLater):
    """An ack's message is still being sent (its record is not committed yet): deliver it again later."""


class SendRefused(ChipError):
    code = "send_refused"


# --- helpers --------------------------------------------------------------------------


def _now() -> datetime:
    return timezone.now()


_SERVER_URL = re.compile(r"https?://[^\s/]+")


def _redacted(chip: Chip, exc: BaseException) -> str:
    """A WAHA/runtime error as a tenant may read it: no proxy credentials, no server address, bounded."""
    if isinstance(exc, ContainerUnreachable):
        return _("no connection to the server") if _never_reached(exc) else _("the server did not answer in time")
    text = _SERVER_URL.sub("WAHA", str(exc))
    return proxy_services.redact(text, chip.proxy_assignment)[:500]


def _container_error(chip: Chip, exc: BaseException) -> ContainerUnavailable:
    return ContainerUnavailable(
        _("The WhatsApp server of this chip is unavailable right now (%(error)s). Try again in a minute.")
        % {"error": _redacted(chip, exc)}
    )


def chip_data(chip: Chip) -> dict:
    """A chip as the outgoing webhook and the API describe it."""
    return {
        "id": chip.pk,
        "alias": chip.alias,
        "status": chip.status,
        "phone": chip.phone or None,
        "push_name": chip.push_name or None,
        "last_error": chip.last_error or None,
        "deleted": chip.is_deleted,
    }


def message_data(message: Message) -> dict:
    """A message as the outgoing webhook describes it."""
    return {
        "id": message.pk,
        "chip": message.chip_id,
        "direction": message.direction,
        "peer": message.peer,
        "type": message.kind,
        "body": message.body,
        "status": message.status,
        "error": message.error or None,
        "waha_id": message.waha_id or None,
        "idempotency_key": message.idempotency_key,
        "created_at": message.created_at,
        "sent_at": message.sent_at,
        "delivered_at": message.delivered_at,
        "read_at": message.read_at,
        "failed_at": message.failed_at,
    }


def _chip_changed(chip: Chip, old_status: str) -> None:
    """Announce a chip's new status (call inside the transaction that saved it)."""
    if old_status == chip.status:
        return
    outgoing.emit(chip.tenant_id, "chip.status", chip_data(chip))
    with scope(tenant=chip.tenant):
        signals.chip_status_changed.send(
            sender=Chip, chip=chip, old_status=old_status, new_status=chip.status, tenant=chip.tenant
        )


def _message_changed(message: Message, old_status: str) -> None:
    outgoing.emit(message.tenant_id, "message.status", lambda: message_data(message))
    with scope(tenant=message.tenant):
        signals.message_status_changed.send(
            sender=Message, message=message, old_status=old_status, new_status=message.status, tenant=message.tenant
        )


def _set_status(chip: Chip, status: str, **fields: Any) -> None:
    """Save a chip's status (and other fields) and announce the change."""
    old = chip.status
    chip.status = status
    if "last_error" in fields and "problem" not in fields:
        fields.update(problem="", problem_detail="")  # a new error text or none: the old code goes
    for key, value in fields.items():
        setattr(chip, key, value)
    if old != status:
        chip.status_changed_at = _now()
    with scopes_disabled():
        chip.save()
    _chip_changed(chip, old)


def _locked_chip(chip_id: int) -> Chip | None:
    return (
        Chip.all_objects.select_for_update(of=("self",))
        .select_related("tenant", "waha_session__container", "proxy_assignment")
        .filter(pk=chip_id)
        .first()
    )


def _session_of(chip: Chip) -> WahaSession:
    if chip.waha_session_id is None:
        raise ChipNotReady(_("This chip is still being prepared. Wait a few seconds."))
    with scopes_disabled():
        return WahaSession.objects.select_related("container").get(pk=chip.waha_session_id)


# --- chips ----------------------------------------------------------------------------


def chips_in_use(tenant: Tenant) -> int:
    """Chips counted against the plan: every chip not deleted."""
    with scopes_disabled():
        return Chip.objects.filter(tenant_id=tenant.pk).count()


def limit_message(tenant: Tenant, in_use: int | None = None) -> str:
    limit = limits.chip_limit(tenant)
    count = chips_in_use(tenant) if in_use is None else in_use
    return _(
        "Your plan allows %(limit)s chip(s) and you have %(count)s. Upgrade your plan on the Billing page to add more."
    ) % {"limit": limit, "count": count}


def create_chip(tenant: Tenant, alias: str) -> Chip:
    """A new chip (PROVISIONING) within the plan's limit; its WAHA session is created by the worker."""
    from . import tasks

    alias = (alias or "").strip()[:80]
    if not alias:
        raise ChipError(_("Give the chip a name."), "invalid")
    if not accounts.may_connect_numbers(tenant):
        raise ChipError(_("Confirm your e-mail address first (we sent you a link): a WhatsApp number is "
                          "connected once it is confirmed."), "email_unconfirmed")
    with scopes_disabled(), transaction.atomic():
        locked = Tenant.objects.select_for_update(no_key=True).get(pk=tenant.pk)
        in_use = Chip.objects.filter(tenant=locked).count()
        if not limits.can_create_chip(locked, in_use):
            raise ChipLimitReached(limit_message(locked, in_use))
        chip = Chip.objects.create(tenant=locked, alias=alias, status_changed_at=_now())
        chip.session_name = f"chip_{chip.pk}"
        try:
            chip.proxy_assignment = proxy_services.assign(locked, chip.session_name)
        except proxy_services.ProxyUnavailable:
            raise ChipError(
                _("No proxy is available for a new chip right now. Try again in a few minutes."), "proxy_unavailable"
            )
        chip.save(update_fields=["session_name", "proxy_assignment", "updated_at"])
        outgoing.emit(chip.tenant_id, "chip.status", chip_data(chip))
        transaction.on_commit(lambda: tasks.provision_chip.delay(chip.pk))
    return chip


def provision(chip_id: int) -> None:
    """Create (or update) the chip's WAHA session, started; the worker's part of create_chip.

    Raises waha errors: the task retries the transient ones and calls provision_failed.
    """
    with scopes_disabled():
        chip = Chip.all_objects.select_related("proxy_assignment").filter(pk=chip_id).first()
        if chip is None or chip.is_deleted or chip.suspended_at:
            return
        proxy = proxy_services.waha_proxy_config(chip.proxy_assignment)
        session = manager.create_session(
            chip.tenant_id, chip.session_name, proxy=proxy, metadata={"whago.chip": str(chip.pk)}, start=True
        )
        with transaction.atomic():
            chip = _locked_chip(chip_id)
            chip.waha_session = session
            if chip.is_deleted:
                chip.save(update_fields=["waha_session", "updated_at"])
                transaction.on_commit(lambda: _remove_session(chip))
                return
            if chip.status in (Chip.Status.PROVISIONING, Chip.Status.FAILED):
                status = session.status if session.status in Chip.Status.values else Chip.Status.STARTING
                if status == Chip.Status.STOPPED:
                    status = Chip.Status.STARTING
                _set_status(chip, status, last_error="")
            else:
                chip.save(update_fields=["waha_session", "updated_at"])


def stalled_provisioning() -> list[int]:
    """Chips still PROVISIONING with no attempt recorded for CHIPS_PROVISION_RETRY_SECONDS."""
    quiet_since = _now() - timedelta(seconds=settings.CHIPS_PROVISION_RETRY_SECONDS)
    with scopes_disabled():
        return list(
            Chip.objects.filter(status=Chip.Status.PROVISIONING, suspended_at=None, updated_at__lt=quiet_since)
            .order_by("pk").values_list("pk", flat=True)[:500]
        )


def fail_stale_provisioning() -> int:
    """FAILED, with what to do, for chips PROVISIONING longer than CHIPS_PROVISION_TIMEOUT_MINUTES."""
    since = _now() - timedelta(minutes=settings.CHIPS_PROVISION_TIMEOUT_MINUTES)
    with scopes_disabled():
        stale = list(
            Chip.objects.filter(status=Chip.Status.PROVISIONING)
            .filter(Q(status_changed_at__lt=since) | Q(status_changed_at=None, created_at__lt=since))
            .values_list("pk", flat=True)[:500]
        )
    for chip_id in stale:
        with scopes_disabled(), transaction.atomic():
            chip = _locked_chip(chip_id)
            if chip is not None and chip.status == Chip.Status.PROVISIONING:
                _set_status(chip, Chip.Status.FAILED, **chip.problem_fields(Chip.Problem.PROVISION_STALE))
    return len(stale)


def provision_problem(chip_id: int, exc: BaseException, final: bool) -> None:
    """Record why provisioning failed; FAILED (with what to do) once the task gives up."""
    with scopes_disabled(), transaction.atomic():
        chip = _locked_chip(chip_id)
        if chip is None or chip.is_deleted:
            return
        if isinstance(exc, manager.ProxyNotSupported):
            fields = chip.problem_fields(Chip.Problem.PROXY_UNSUPPORTED)
        elif isinstance(exc, manager.PortRangeExhausted | manager.NoServerWithRoom):
            fields = chip.problem_fields(Chip.Problem.NO_ROOM)
        else:
            fields = chip.problem_fields(Chip.Problem.PROVISION_ERROR, _redacted(chip, exc))
        if final:
            _set_status(chip, Chip.Status.FAILED, **fields)
        else:
            chip.last_error = fields["last_error"]
            chip.save(update_fields=[*fields, "updated_at"])


def apply_session_status(tenant: Tenant, session_name: str, status: str, me: dict | None, event_ms: int) -> None:
    """Mirror a WAHA session.status event on the chip (stale and repeated events change nothing)."""
    with scopes_disabled():
        chip = (
            Chip.all_objects.select_for_update(of=("self",))
            .select_related("tenant", "waha_session")
            .filter(tenant_id=tenant.pk, session_name=session_name)
            .first()
        )
        if chip is None or chip.is_deleted or status not in Chip.Status.values:
            return
        if event_ms and event_ms < chip.status_event_ms:
            return  # an older event delivered late (webhooks are sent in parallel)
        fields: dict[str, Any] = {"status_event_ms": max(event_ms, chip.status_event_ms)}
        if chip.status == Chip.Status.DISCONNECTED and status != Chip.Status.WORKING:
            status = Chip.Status.DISCONNECTED  # logged out on purpose: the session's own states do not matter
        if chip.suspended_at:
            status = Chip.Status.STOPPED  # stopped by the plan limit until it fits again
        if status == Chip.Status.WORKING:
            account = me or {}
            if not account.get("id") and chip.waha_session is not None:
                account = {"id": chip.waha_session.me_id, "pushName": chip.waha_session.me_push_name}
            with contextlib.suppress(ValidationError):
                fields["phone"] = phone_from_chat_id(str(account.get("id") or ""))
            fields["push_name"] = str(account.get("pushName") or chip.push_name)[:128]
            fields["last_error"] = ""
            fields["connected_at"] = chip.connected_at or _now()
        elif status == Chip.Status.FAILED and not chip.last_error:
            fields.update(chip.problem_fields(Chip.Problem.SESSION_CLOSED))
        _set_status(chip, status, **fields)


def _start_over(chip: Chip, status: str) -> Chip:
    """Record the status an operation moved the chip to (WAHA's next events take it from there)."""
    if status not in Chip.Status.values or status == Chip.Status.STOPPED:
        status = Chip.Status.STARTING
    _set_status(chip, status, last_error="")
    return chip


def _call_session(chip: Chip, previous: str, call) -> dict:
    """Call WAHA for the chip without holding its row (WAHA's webhooks need it meanwhile).

    On failure the status the operation had set is put back, and the error explained.
    """
    try:
        info = call(_session_of(chip))
    except WahaError as exc:
        with scopes_disabled(), transaction.atomic():
            current = _locked_chip(chip.pk)
            if current is not None and current.status == Chip.Status.STARTING:
                _set_status(current, previous)
        if isinstance(exc, SessionNotFound):
            raise
        raise _container_error(chip, exc)
    return info if isinstance(info, dict) else {}


def connect(chip: Chip) -> Chip:
    """Start the chip's session so it shows a QR code (or reconnects a paired number)."""
    from . import tasks

    with scopes_disabled(), transaction.atomic():
        locked = Tenant.objects.select_for_update(no_key=True).get(pk=chip.tenant_id)
        chip = _locked_chip(chip.pk)
        if chip is None or chip.is_deleted:
            raise ChipError(_("This chip was deleted."), "not_found")
        if chip.status == Chip.Status.WORKING:
            return chip
        if chip.suspended_at:
            active = Chip.objects.filter(tenant=locked, suspended_at__isnull=True).count()
            if not limits.can_create_chip(locked, active):
                raise ChipLimitReached(limit_message(locked))
            chip.suspended_at = None
        previous = chip.status
        if chip.waha_session_id is None:
            _set_status(chip, Chip.Status.PROVISIONING, last_error="")
            transaction.on_commit(lambda: tasks.provision_chip.delay(chip.pk))
            return chip
        # STARTING first: events the session sends while we call WAHA are newer and win.
        _set_status(chip, Chip.Status.STARTING, last_error="")
    method = manager.restart_session if previous == Chip.Status.FAILED else manager.start_session
    try:
        info = _call_session(chip, previous, method)
    except SessionNotFound:
        # The container lost it (recreated without its data): create it again.
        with scopes_disabled(), transaction.atomic():
            chip = _locked_chip(chip.pk)
            _set_status(chip, Chip.Status.PROVISIONING, last_error="")
            transaction.on_commit(lambda: tasks.provision_chip.delay(chip.pk))
        return chip
    return _settle(chip, info)


def _settle(chip: Chip, info: dict) -> Chip:
    """Apply the status WAHA answered, unless a webhook already moved the chip on."""
    with scopes_disabled(), transaction.atomic():
        current = _locked_chip(chip.pk)
        if current.status == Chip.Status.STARTING and info.get("status") in (
            Chip.Status.SCAN_QR_CODE, Chip.Status.WORKING, Chip.Status.FAILED
        ):
            _start_over(current, info["status"])
        return current


def qr_png(chip: Chip) -> bytes:
    """The current pairing QR code as PNG, fetched from the chip's container."""
    if chip.status != Chip.Status.SCAN_QR_CODE:
        raise ChipNotReady(_("There is no QR code to scan: the chip is %(status)s.") % {
            "status": chip.get_status_display()})
    session = _session_of(chip)
    try:
        return manager.qr(session, "image")
    except (WahaRequestError, SessionNotFound) as exc:
        raise ChipNotReady(_("The QR code is not available yet (%(error)s).") % {"error": _redacted(chip, exc)})
    except WahaError as exc:
        raise _container_error(chip, exc)


def request_pairing_code(chip: Chip, phone: str) -> str:
    """A code to type on the phone (WhatsApp › Linked devices › Link with phone number)."""
    try:
        number = normalize_phone(phone)
    except ValidationError as exc:
        raise ChipError(exc.messages[0], "invalid_phone")
    if chip.status != Chip.Status.SCAN_QR_CODE:
        raise ChipNotReady(_("A pairing code can only be requested while the chip waits to be linked."))
    session = _session_of(chip)
    try:
        return manager.request_code(session, number.lstrip("+"))
    except (WahaRequestError, SessionNotFound) as exc:
        raise ChipNotReady(_("The pairing code could not be requested (%(error)s).") % {"error": _redacted(chip, exc)})
    except WahaError as exc:
        raise _container_error(chip, exc)


def disconnect(chip: Chip) -> Chip:
    """Log the number out of WhatsApp and stop the session (DISCONNECTED; connect() links again)."""
    if chip.is_deleted:
        raise ChipError(_("This chip was deleted."), "not_found")
    if chip.waha_session_id is not None:
        session = _session_of(chip)
        try:
            manager.logout_session(session)
            manager.stop_session(session)
        except SessionNotFound:
            pass  # nothing left to log out
        except WahaError as exc:
            raise _container_error(chip, exc)
    with scopes_disabled(), transaction.atomic():
        chip = _locked_chip(chip.pk)
        _set_status(chip, Chip.Status.DISCONNECTED, last_error="")
        return chip


def restart(chip: Chip) -> Chip:
    """Restart the chip's session (a paired number reconnects without a new QR)."""
    if chip.suspended_at or chip.waha_session_id is None or chip.status in (
        Chip.Status.DISCONNECTED, Chip.Status.STOPPED
    ):
        return connect(chip)
    with scopes_disabled(), transaction.atomic():
        chip = _locked_chip(chip.pk)
        if chip is None or chip.is_deleted:
            raise ChipError(_("This chip was deleted."), "not_found")
        previous = chip.status
        _set_status(chip, Chip.Status.STARTING, last_error="")
    try:
        info = _call_session(chip, previous, manager.restart_session)
    except SessionNotFound as exc:
        raise _container_error(chip, exc)
    return _settle(chip, info)


def rename(chip: Chip, alias: str) -> Chip:
    alias = (alias or "").strip()[:80]
    if not alias:
        raise ChipError(_("Give the chip a name."), "invalid")
    chip.alias = alias
    with scopes_disabled():
        Chip.all_objects.filter(pk=chip.pk).update(alias=alias, updated_at=_now())
    return chip


def delete_chip(chip: Chip) -> None:
    """Soft-delete the chip (its messages stay), delete its WAHA session and release its proxy."""
    with scopes_disabled(), transaction.atomic():
        chip = _locked_chip(chip.pk)
        if chip is None or chip.is_deleted:
            return
        chip.deleted_at = _now()
        _set_status(chip, Chip.Status.STOPPED)
        transaction.on_commit(lambda: _remove_session(chip))


def _remove_session(chip: Chip) -> None:
    """Delete the WAHA session now, or through a retried task when the container does not answer."""
    from waha import tasks as waha_tasks

    proxy_services.release(chip.session_name)
    if chip.waha_session_id is None:
        return
    with scopes_disabled():
        session = WahaSession.objects.select_related("container").filter(pk=chip.waha_session_id).first()
    if session is None:
        return
    try:
        manager.delete_session(session)
    except WahaError as exc:
        log.warning("session %s of deleted chip %s not deleted yet (%s): retrying in the worker",
                    session.name, chip.pk, exc)
        waha_tasks.delete_session.delay(session.pk)


def stop_chip_session(chip_id: int) -> None:
    """Stop a chip's WAHA session (a lower plan suspended the chip)."""
    with scopes_disabled():
        chip = Chip.all_objects.filter(pk=chip_id).first()
    if chip is None or chip.waha_session_id is None:
        return
    with contextlib.suppress(SessionNotFound):
        manager.stop_session(_session_of(chip))


def enforce_chip_limit(tenant: Tenant) -> list[Chip]:
    """Stop (not delete) the chips above the plan's limit; lift that stop when they fit again.

    Connected chips are kept first, then the oldest. Returns the chips stopped now.
    """
    from . import tasks

    limit = limits.chip_limit(tenant)
    with scopes_disabled(), transaction.atomic():
        Tenant.objects.select_for_update(no_key=True).get(pk=tenant.pk)
        chips = sorted(
            Chip.objects.select_for_update().filter(tenant_id=tenant.pk),
            key=lambda c: (c.suspended_at is not None, c.status != Chip.Status.WORKING, c.created_at, c.pk),
        )
        stopped = []
        reason = _(
            "Stopped because your plan now allows %(limit)s chip(s). Delete another chip or upgrade your plan, "
            "then connect it again."
        ) % {"limit": limit}
        for position, chip in enumerate(chips):
            if position >= limit and chip.suspended_at is None:
                _set_status(chip, Chip.Status.STOPPED, suspended_at=_now(), last_error=reason)
                stopped.append(chip)
                transaction.on_commit(lambda pk=chip.pk: tasks.stop_chip.delay(pk))
            elif position < limit and chip.suspended_at is not None:
                chip.suspended_at = None
                chip.last_error = ""
                chip.save(update_fields=["suspended_at", "last_error", "updated_at"])
        return stopped


def reapply_proxy(session_name: str) -> None:
    """Give the chip's WAHA session its new proxy (WAHA restarts a running session on update)."""
    with scopes_disabled():
        chip = Chip.objects.select_related("proxy_assignment").filter(session_name=session_name).first()
        if chip is None or chip.waha_session_id is None:
            return
        assignment = proxy_services.assignment_for(session_name)
        manager.create_session(
            chip.tenant_id,
            chip.session_name,
            proxy=proxy_services.waha_proxy_config(assignment),
            metadata={"whago.chip": str(chip.pk)},
            start=False,
        )
        if assignment is not None and chip.proxy_assignment_id != assignment.pk:
            Chip.all_objects.filter(pk=chip.pk).update(proxy_assignment=assignment)


# --- messages: queueing -------------------------------------------------------------------


def _sniff_image(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _media(kind: str, file, filename: str | None, mimetype: str | None) -> tuple[ContentFile, str, str]:
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
    from . import tasks

    if idempotency_key:
        idempotency_key = str(idempotency_key).strip()[:100]
        with scopes_disabled():
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
        content, filename, mimetype = _media(kind, file, filename, mimetype)
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
        with scopes_disabled(), transaction.atomic():
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
            transaction.on_commit(lambda: tasks.send_message.delay(message.pk))
    except IntegrityError:
        if saved_name:
            message.media.storage.delete(saved_name)
        with scopes_disabled():
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


class BatchRefused(SendRefused):
    """Some messages of a batch are invalid: .errors maps their position to the reason; nothing was queued."""

    def __init__(self, message: str, errors: dict[int, str]):
        super().__init__(message, "invalid")
        self.errors = errors


MAX_BATCH = 1000
SEND_CHUNK = 25


def send_messages(
    tenant: Tenant, items: list[dict], *, source: str = "api", reservation=None
) -> list[tuple[Message, bool]]:
    """Queue many text messages at once: all or none (bad items, quota), one reservation, one insert.

    items: [{"chip": Chip id, "to": phone, "text": str, "idempotency_key": optional}].
    Returns (message, created) in the items' order; items whose key was already used give
    the existing message. Refused batches raise BatchRefused or SendRefused (quota).
    """
    from . import tasks

    if not items:
        raise SendRefused(_("Send at least one message."), "invalid")
    if len(items) > MAX_BATCH:
        raise SendRefused(_("At most %(max)s messages per batch.") % {"max": MAX_BATCH}, "invalid")
    with scopes_disabled():
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
            with scopes_disabled(), transaction.atomic():
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
                transaction.on_commit(lambda: [tasks.send_messages.delay(chunk) for chunk in chunks])
        except IntegrityError:
            # Another request used one of these keys a moment ago: nothing of this batch was kept.
            raise SendRefused(_("Some idempotency keys were used by another request meanwhile; send again."),
                              "conflict")
    created = {id(m) for m in new}
    return [(message, id(message) in created) for _key, message in plan]


# --- messages: sending ------------------------------------------------------------------


def _backoff(attempt: int) -> float:
    return min(settings.CHIPS_SEND_BACKOFF_SECONDS * (2 ** max(0, attempt - 1)), 600.0)


def _never_reached(exc: ContainerUnreachable) -> bool:
    """Whether the request provably never reached WAHA (refused or unconnectable), so resending is safe."""
    cause = exc.__cause__
    if isinstance(cause, requests.ConnectTimeout):
        return True
    if isinstance(cause, requests.ConnectionError) and not isinstance(cause, requests.Timeout):
        inner = cause.args[0] if cause.args else None
        reason = getattr(inner, "reason", inner)
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


def _fail(message: Message, reason: str, release: bool) -> None:
    """FAILED with the reason; the quota is given back when the message certainly was not sent."""
    old = message.status
    message.status = Message.Status.FAILED
    message.error = reason[:2000]
    message.failed_at = _now()
    message.next_attempt_at = None
    message.save()
    if release and message.reservation_id:
        limits.release_reservation(message.reservation, 1)
    _message_changed(message, old)


def _retry_or_fail(message: Message, reason: str) -> float | None:
    """Keep the message QUEUED for another attempt after a backoff, or FAIL it when out of attempts."""
    if message.attempts >= settings.CHIPS_SEND_MAX_ATTEMPTS:
        _fail(
            message,
            _("Not sent after %(attempts)s attempts: %(reason)s") % {"attempts": message.attempts, "reason": reason},
            release=True,
        )
        return None
    wait = _backoff(message.attempts)
    message.error = reason[:2000]
    message.next_attempt_at = _now() + timedelta(seconds=wait)
    message.save(update_fields=["error", "next_attempt_at", "attempts", "attempted_at"])
    return wait


def _unsendable_reason(chip: Chip) -> str | None:
    if chip.is_deleted:
        return _("the chip was deleted")
    if chip.waha_session_id is None or chip.status != Chip.Status.WORKING:
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


def _sender_locks() -> bool:
    """Whether the database gives senders a lock that lives as long as their connection (PostgreSQL)."""
    return connection.vendor == "postgresql"


def _one_row(sql: str, params: list) -> tuple | None:
    """Run one statement of the send path and return its first row.

    On PostgreSQL it runs as a prepared statement of this connection (server-side binding,
    parsed and planned once per connection: settings' prepare_threshold lets psycopg do it);
    the send path runs it once per message.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    import psycopg

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()


_CLAIM_SQL = (
    f"UPDATE {Message._meta.db_table} SET attempts = attempts + 1, attempted_at = %s "  # noqa: S608
    "WHERE id = %s AND direction = %s AND status = %s AND attempted_at IS NULL"
)
_SENT_SQL = (
    f"UPDATE {Message._meta.db_table} SET waha_id = %s, status = %s, sent_at = %s, error = '', "  # noqa: S608
    "next_attempt_at = NULL WHERE id = %s AND status = %s AND attempted_at = %s"
)


def _claim_params(claimed_at: datetime | None, message_id_: int | None) -> list:
    return [connection.ops.adapt_datetimefield_value(claimed_at), message_id_, Message.Direction.OUT,
            Message.Status.QUEUED]


def _sent_params(message: Message | None) -> list:
    """The SENT record's parameters (only while the claim is still this sender's: a recovery may have
    judged it interrupted); all NULL, matching nothing, without a message."""
    if message is None:
        return [None] * 6
    return [message.waha_id, message.status, connection.ops.adapt_datetimefield_value(message.sent_at),
            message.pk, Message.Status.QUEUED, connection.ops.adapt_datetimefield_value(message.attempted_at)]


def _claim_attempt(message_id_: int) -> tuple[datetime, int] | None:
    """Mark a queued, never attempted message as being attempted now, committed at once.

    Returns (claimed_at, attempts) when this caller got it, None when another sender has it
    or it is no longer queued. Must run in autocommit: the mark is on record (durably) before
    the call. On PostgreSQL the same statement takes the message's advisory lock for this
    connection: held while the message is handed to WAHA and recorded, it tells a live sender
    from a dead one, makes an early ack wait for the record, and goes with the connection if
    the worker dies. attempt() releases it (a Sender, later: see there).
    """
    claimed_at = _now()
    lock = ", pg_advisory_lock(id)" if _sender_locks() else ""
    row = _one_row(f"{_CLAIM_SQL} RETURNING attempts{lock}", _claim_params(claimed_at, message_id_))
    return (claimed_at, row[0]) if row else None


def _release_attempt(message_id_: int) -> None:
    """Give up the message's sender lock, once its outcome is committed."""
    if _sender_locks():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [message_id_])


def _sender_alive(message_id_: int) -> bool:
    """In a transaction: whether a live sender holds the message (its lock is then not taken)."""
    if not _sender_locks():
        return False  # SQLite (embedded mode): a claim is judged by its age alone
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [message_id_])
        return not cursor.fetchone()[0]


def _wait_for_senders(message_ids: list[int]) -> None:
    """In a transaction: wait until these messages' senders (if any) have committed their outcome.

    A shared lock: waiters do not wait for each other, only for the senders. The wait is bounded
    (CHIPS_ACK_WAIT_SECONDS): past it SenderBusy is raised, and the transaction must roll back.
    """
    if not _sender_locks():
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
                       [f"{max(1, int(settings.CHIPS_ACK_WAIT_SECONDS * 1000))}ms"])
        previous = cursor.fetchone()[0]
        try:
            for message_id_ in sorted(message_ids):
                cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [message_id_])
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == "55P03":  # lock_not_available
                raise SenderBusy(_("the message is still being sent")) from exc
            raise
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])


def attempt(message: Message, session: WahaSession | None, claim: tuple[datetime, int]) -> float | None:
    """Send a message whose attempt the caller claimed (_claim_attempt); seconds before a retry, or None.

    `message` carries its chip and tenant. Calls WAHA and records SENT with WAHA's id; a
    failure is recorded with its reason: retried later (the claim is given back) only when the
    message provably never reached WhatsApp, otherwise FAILED. The SENT record does not wait
    for its WAL flush (synchronous_commit off for that statement's transaction): the claim
    before it is durable, so losing the record in a database crash only leaves the message
    interrupted, which is never sent again.
    """
    try:
        return _attempt(message, session, claim, _record_sent)
    finally:
        _release_attempt(message.pk)


def _record_sent(message: Message, old_status: str) -> None:
    relaxed = ", set_config('synchronous_commit', 'off', true)" if connection.vendor == "postgresql" else ""
    if _one_row(f"{_SENT_SQL} RETURNING id{relaxed}", _sent_params(message)) is not None:
        _message_changed(message, old_status)


class Sender:
    """Sends messages one after another on this connection (a campaign lane, a batch task).

    The protocol of _claim_attempt() + attempt(), in one round trip per message on PostgreSQL
    instead of three: a message handed to WAHA has its SENT record written by the statement
    that claims the next message, in the claim's (durable) transaction, and its sender lock is
    given up by the statement after that, once the record is committed. So a message's lock is
    held from its claim until its outcome is on record, as with attempt(); an early ack waits
    for it, and for the next message's call to WAHA. Use as a context manager: leaving records
    the last outcome and gives up every lock. Without sender locks (SQLite) it is exactly
    _claim_attempt() + attempt().
    """

    # Records the SENT of the message handed over last (if any), claims the next one (if any)
    # taking its lock, and gives up the locks of messages whose outcome is already committed.
    # Parameters: _sent_params, _claim_params, the ids to unlock. NULLs match nothing.
    STEP_SQL = (
        f"WITH recorded AS ({_SENT_SQL} RETURNING id), claimed AS ({_CLAIM_SQL} RETURNING id, attempts) "  # noqa: S608
        "SELECT (SELECT count(*) FROM recorded), claimed.attempts, pg_advisory_lock(claimed.id), "
        "(SELECT count(pg_advisory_unlock(settled)) FROM unnest(%s::bigint[]) AS settled) "
        "FROM (VALUES (1)) AS one LEFT JOIN claimed ON true"
    )

    def __init__(self):
        self.stepping = _sender_locks()
        self.claimed: tuple[int, datetime] | None = None  # claimed and locked, not handed to WAHA yet
        self.unrecorded: tuple[Message, str] | None = None  # handed to WAHA, SENT not on record yet
        self.settled: list[int] = []  # outcome committed, lock still held

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.finish()
            return
        try:
            self.finish()
        except Exception:  # the error on its way out matters more
            log.exception("could not record the last send of an interrupted run")

    def finish(self) -> None:
        """Record the last outcome and give up every lock this sender holds."""
        if not self.stepping:
            return
        try:
            if self.claimed is not None:
                # Claimed, never handed to WAHA (an error came in between): the claim is given back.
                message_id_, claimed_at = self.claimed
                with scopes_disabled():
                    Message.objects.filter(pk=message_id_, status=Message.Status.QUEUED,
                                           attempted_at=claimed_at).update(attempted_at=None)
                self.settled.append(message_id_)
                self.claimed = None
            if self.unrecorded is not None:
                self._step(None)
            settled, self.settled = self.settled, []
            for message_id_ in settled:
                _release_attempt(message_id_)
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """After a failed statement: the locks must not outlive it on a connection that stays open
        (a message would look in flight for good), so the connection is closed and they go with it.
        A message handed to WAHA but not on record is then judged interrupted, as after a crash."""
        self.claimed, self.unrecorded, self.settled = None, None, []
        if not connection.in_atomic_block:
            connection.close()

    def claim(self, message_id_: int) -> tuple[datetime, int] | None:
        """_claim_attempt(), recording the previous message's outcome on the way."""
        if not self.stepping:
            return _claim_attempt(message_id_)
        claimed_at = _now()
        try:
            attempts = self._step(message_id_, claimed_at)
        except BaseException:
            self._abandon()
            raise
        return (claimed_at, attempts) if attempts is not None else None

    def _step(self, message_id_: int | None, claimed_at: datetime | None = None) -> int | None:
        unrecorded, settled = self.unrecorded, self.settled
        params = [*_sent_params(unrecorded and unrecorded[0]), *_claim_params(claimed_at, message_id_), settled]
        recorded, attempts, _locked, _unlocked = _one_row(self.STEP_SQL, params)
        # Committed: the recorded message's lock is given up by the next statement.
        self.unrecorded, self.settled = None, [unrecorded[0].pk] if unrecorded else []
        if attempts is not None:
            self.claimed = (message_id_, claimed_at)
        if unrecorded and recorded:
            try:
                _message_changed(*unrecorded)
            except Exception:  # an announcement lost must not stop the sends (nor hold their locks)
                log.exception("could not announce message %s as sent", unrecorded[0].pk)
        return attempts

    def attempt(self, message: Message, session: WahaSession | None, claim: tuple[datetime, int]) -> float | None:
        """attempt(): the SENT record and the lock wait for the next claim (or finish())."""
        if not self.stepping:
            return attempt(message, session, claim)
        self.claimed = None
        try:
            return _attempt(message, session, claim, self._defer)
        finally:
            if self.unrecorded is None or self.unrecorded[0] is not message:
                self.settled.append(message.pk)  # a failure, on record already (or an error: interrupted)

    def _defer(self, message: Message, old_status: str) -> None:
        self.unrecorded = (message, old_status)


def _attempt(message: Message, session: WahaSession | None, claim: tuple[datetime, int], record) -> float | None:
    """The call to WAHA for a claimed message, and the record of a failure; a success is handed to
    record(message, old_status)."""
    message.attempted_at, message.attempts = claim
    chip = message.chip
    problem = _unsendable_reason(chip) if session is not None else _("the chip is not connected")
    if problem:
        message.attempted_at = None
        return _retry_or_fail(message, problem)
    try:
        sent = _call_waha(message, session)
    except ContainerUnreachable as exc:
        if not _never_reached(exc):
            _fail(
                message,
                _(
                    "WhatsApp's server did not answer in time, so the message may have been sent. It was "
                    "not sent again to avoid a duplicate (%(error)s)."
                ) % {"error": _redacted(chip, exc)},
                release=False,
            )
            return None
        message.attempted_at = None
        return _retry_or_fail(
            message, _("the chip's server is unreachable (%(error)s)") % {"error": _redacted(chip, exc)}
        )
    except (WahaServerError, SessionNotFound, Unauthorized) as exc:
        message.attempted_at = None
        return _retry_or_fail(
            message, _("the chip's server refused the message (%(error)s)") % {"error": _redacted(chip, exc)}
        )
    except FeatureUnavailable:
        message.attempted_at = None
        _fail(message, _("This chip's WhatsApp server (WAHA Core) cannot send images or files: send text only."),
              release=True)
        return None
    except WahaRequestError as exc:
        message.attempted_at = None
        if exc.status == 422:  # the session is not WORKING right now: it may come back
            return _retry_or_fail(
                message, _("the chip is not ready (%(error)s)") % {"error": _redacted(chip, exc)}
            )
        _fail(message, _("WhatsApp refused the message: %(error)s") % {"error": _redacted(chip, exc)},
              release=True)
        return None
    if settings.CHIPS_SEND_PAUSE_AFTER_HTTP:
        time.sleep(settings.CHIPS_SEND_PAUSE_AFTER_HTTP)
    old = message.status
    message.waha_id = message_id(sent)[:200]
    message.status = Message.Status.SENT
    message.sent_at = _now()
    message.error = ""
    message.next_attempt_at = None
    record(message, old)
    return None


# Seconds a claim whose sender is gone is given before it counts as an interrupted attempt.
# With the sender locks of PostgreSQL, a live sender is seen as such; without them (SQLite),
# this must outlast the longest call to WAHA.
INTERRUPTED_GRACE = 5.0
INTERRUPTED_GRACE_WITHOUT_LOCKS = 45.0


def _handle_unclaimable(message: Message) -> float | None:
    """A queued message this task could not claim: another sender has it, or an attempt died."""
    if message.attempted_at is None:
        return None  # claimed and given back by another task meanwhile: that task goes on
    with transaction.atomic():
        if _sender_alive(message.pk):
            return None  # its sender is at work: it records the outcome
        still = Message.objects.select_for_update().filter(
            pk=message.pk, status=Message.Status.QUEUED, attempted_at=message.attempted_at).exists()
        if not still:
            return None  # its sender recorded the outcome meanwhile
        grace = INTERRUPTED_GRACE if _sender_locks() else INTERRUPTED_GRACE_WITHOUT_LOCKS
        age = (_now() - message.attempted_at).total_seconds()
        if age < grace:
            # Nobody holds it, but the claim is fresh: its sender may be about to: look again later.
            return grace - age + 0.5
        # Nobody is sending it now: an earlier attempt died, perhaps after handing it to WAHA.
        # WAHA's own acks of it, stored but not matched (its id never got recorded), settle it.
        if _settle_from_stored_acks(message):
            return None
        _fail(
            message,
            _(
                "Sending was interrupted after the message was handed to WhatsApp, so it may have been "
                "delivered. It was not sent again to avoid a duplicate: check the conversation."
            ),
            release=False,
        )
    return None


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


# Acks stored up to this long before a claim may belong to it (clocks of web and worker differ).
ACK_EVIDENCE_MARGIN = timedelta(seconds=5)


def _settle_from_stored_acks(message: Message) -> bool:
    """An interrupted message WAHA did send: its message.ack events were stored, unmatched (the
    SENT record with WAHA's id never committed). Exactly one unclaimed sent-message id to the
    same chat since the claim is evidence enough: the message takes that id and its furthest
    status. Several candidates prove nothing and nothing is guessed. Call inside the claim's lock."""
    session = message.chip.waha_session
    if session is None:
        return False
    chat = chat_id(message.peer)
    events = WebhookEvent.objects.filter(
        container_id=session.container_id, session=session.remote_name, event="message.ack",
        received_at__gte=message.attempted_at - ACK_EVIDENCE_MARGIN,
    ).values_list("payload", flat=True)
    acks: dict[str, int] = {}
    for body in events:
        payload = body.get("payload") if isinstance(body, dict) else None
        waha_id = str((payload or {}).get("id") or "")
        if not waha_id.startswith(f"true_{chat}_"):
            continue
        try:
            acks[waha_id] = max(acks.get(waha_id, 0), int(payload.get("ack") or 0))
        except (TypeError, ValueError):
            continue
    taken = set(Message.objects.filter(chip_id=message.chip_id, waha_id__in=list(acks)).values_list(
        "waha_id", flat=True))
    candidates = [waha_id for waha_id in acks if waha_id not in taken]
    if len(candidates) != 1 or acks[candidates[0]] < 0:
        return False  # nothing proven (or WhatsApp refused it: then it failed as the message says)
    [waha_id] = candidates
    old = message.status
    message.waha_id, message.error, message.next_attempt_at = waha_id[:200], "", None
    message.status = ACK_STATUS.get(acks[waha_id], Message.Status.SENT)
    message.sent_at = message.attempted_at
    now = _now()
    if message.status in (Message.Status.DELIVERED, Message.Status.READ):
        message.delivered_at = message.delivered_at or now
    if message.status == Message.Status.READ:
        message.read_at = message.read_at or now
    message.save()
    _message_changed(message, old)
    log.info("interrupted message %s settled from WAHA's stored acks as %s", message.pk, message.status)
    return True


def _sendable(message: Message | None) -> bool:
    return (message is not None and message.direction == Message.Direction.OUT
            and message.status == Message.Status.QUEUED)


def deliver(message_id_: int) -> float | None:
    """Send one queued message through WAHA, exactly once; returns seconds before a retry, or None."""
    with scopes_disabled():
        claim = _claim_attempt(message_id_)
        message = (
            Message.objects.select_related("tenant", "chip__waha_session__container").filter(pk=message_id_).first()
        )
        if claim is None:
            return _handle_unclaimable(message) if _sendable(message) else None
        if not _sendable(message):  # deleted or changed right after the claim: nothing to send
            _release_attempt(message_id_)
            return None
        return attempt(message, message.chip.waha_session, claim)


def deliver_many(message_ids: list[int]) -> dict[int, float]:
    """deliver() for several messages, one after another, reading them (and their chips) once.

    Returns {message id: seconds before its retry} for those to be tried again.
    """
    retries: dict[int, float] = {}
    with scopes_disabled(), Sender() as sender:
        messages = Message.objects.select_related("tenant", "chip").in_bulk(message_ids)
        session_ids = {m.chip.waha_session_id for m in messages.values() if m.chip.waha_session_id}
        sessions = WahaSession.objects.select_related("container").in_bulk(session_ids)
        for message_id_ in message_ids:
            message = messages.get(message_id_)
            claim = sender.claim(message_id_) if _sendable(message) and message.attempted_at is None else None
            if claim is None:
                sender.finish()
                wait = deliver(message_id_)  # already handled elsewhere, or an attempt to look into
            else:
                wait = sender.attempt(message, sessions.get(message.chip.waha_session_id), claim)
            if wait is not None:
                retries[message_id_] = wait
    return retries


STALE_AFTER = timedelta(minutes=5)


def requeue_stale() -> int:
    """Enqueue again the QUEUED messages whose task was lost (a worker died, a broker restarted)."""
    from . import tasks

    cutoff = _now() - STALE_AFTER
    with scopes_disabled():
        ids = list(
            Message.objects.filter(direction=Message.Direction.OUT, status=Message.Status.QUEUED)
            .filter(Q(next_attempt_at__lt=cutoff) | Q(next_attempt_at__isnull=True, created_at__lt=cutoff))
            .values_list("pk", flat=True)[:5000]
        )
    for pk in ids:
        tasks.send_message.delay(pk)
    return len(ids)


# --- messages: events from WAHA -------------------------------------------------------------


def _alive_chip(tenant: Tenant, session_name: str) -> Chip | None:
    return Chip.objects.select_related("tenant").filter(tenant_id=tenant.pk, session_name=session_name).first()


def _chip_id_of(tenant_id: int, session_name: str) -> int | None:
    """The id of the tenant's chip with this WAHA session (a name given once, never reused)."""
    key = f"chips:session-chip:{tenant_id}:{session_name}"
    chip_id = caches["local"].get(key)
    if chip_id is None:
        found = list(Chip.all_objects.with_scopes_disabled().filter(
            tenant_id=tenant_id, session_name=session_name).values_list("pk", flat=True)[:1])
        if not found:
            return None
        chip_id = found[0]
        caches["local"].set(key, chip_id, 3600)
    return chip_id


def apply_ack(tenant: Tenant, session_name: str, waha_message_id: str, ack: int, payload: dict) -> Message | None:
    """Move an outgoing message forward on a message.ack event; returns it when it changed."""
    if not waha_message_id:
        return None
    chip_id = _chip_id_of(tenant.pk, session_name)
    if chip_id is None:
        return None
    with scopes_disabled():
        # The same WhatsApp id reported by another chip's session is another message: looked up per chip.
        outgoing_messages = Message.objects.filter(chip_id=chip_id, direction=Message.Direction.OUT).order_by()
        message = next(iter(outgoing_messages.filter(waha_id=waha_message_id)[:1]), None)
        if message is None and payload.get("fromMe", True) is not False:
            # Its sender may not have recorded WAHA's id yet: wait for the chip's in-flight sends.
            inflight = outgoing_messages.filter(status=Message.Status.QUEUED, waha_id="", attempted_at__isnull=False)
            with contextlib.suppress(ValidationError):
                inflight = inflight.filter(peer=phone_from_chat_id(str(payload.get("to") or "")))
            inflight_ids = list(inflight.values_list("pk", flat=True))
            if inflight_ids:
                _wait_for_senders(inflight_ids)
                message = next(iter(outgoing_messages.filter(waha_id=waha_message_id)[:1]), None)
            if message is None:
                message = _adopt_interrupted(outgoing_messages, waha_message_id)
        if message is None:
            return None
        now = _now()
        old = message.status
        if ack < 0:
            if old not in (Message.Status.QUEUED, Message.Status.SENT):
                return None
            reason = _("WhatsApp could not deliver the message (%(ack)s).") % {
                "ack": str(payload.get("ackName") or "ERROR")}
            updates: dict[str, Any] = {"status": Message.Status.FAILED, "error": reason, "failed_at": now}
            lower = [Message.Status.QUEUED, Message.Status.SENT]
        else:
            new = ACK_STATUS.get(ack)
            if new is None or Message.PROGRESS.get(old, 99) >= Message.PROGRESS[new]:
                return None  # a repeated or late ack: the message is already there or further
            lower = [status for status, rank in Message.PROGRESS.items() if rank < Message.PROGRESS[new]]
            updates = {"status": new}
            if new == Message.Status.SENT:
                updates["sent_at"] = message.sent_at = message.sent_at or now
            if new in (Message.Status.DELIVERED, Message.Status.READ):
                updates["delivered_at"] = message.delivered_at = message.delivered_at or now
            if new == Message.Status.READ:
                updates["read_at"] = now
        # Conditional: of two acks racing, only the one that moves the message forward writes.
        if not Message.objects.filter(pk=message.pk, status__in=lower).update(**updates):
            return None
        for field, value in updates.items():
            setattr(message, field, value)
        message.tenant = tenant
        _message_changed(message, old)
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
    with scopes_disabled():
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
            from . import tasks

            message_pk = message.pk
            transaction.on_commit(lambda: tasks.fetch_inbound_media.delay(message_pk, media_url))
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
    with scopes_disabled():
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
    with scopes_disabled():
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
    with scopes_disabled():
        return Message.objects.filter(chip_id=chip.pk, peer=peer, direction=Message.Direction.IN,
                                      read_at__isnull=True).update(read_at=timezone.now())


def unread_count(tenant: Tenant) -> int:
    """Received messages of the tenant's live chips not opened in the inbox yet (the menu's badge)."""
    with scopes_disabled():
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
