"""A chip's life: created within the plan, provisioned on a WAHA session, linked, restarted,
disconnected, stopped by the plan limit, deleted; and WAHA's session events mirrored on it.

    create_chip(tenant, alias) -> Chip           plan limit checked under the tenant row lock; the
                                                 worker provisions it (provision_chip -> provision)
    connect(chip) / request_pairing_code(chip, phone) / qr_png(chip)
    disconnect(chip) (logout + stop) / restart(chip) / rename(chip, alias) / delete_chip(chip)
    apply_session_status(...)                    a WAHA session.status event, mirrored on the chip
    enforce_chip_limit(tenant)                   chips above a lower plan's limit stopped (stop_chip)
    reapply_proxy(session_name)                  the chip's session given its new proxy

Which status allows which action, and which status may follow which, is the model's
(Chip.can, Chip.move_to); here _set_status saves a move and announces it (chips.events).
The Celery tasks that run this code in the worker are defined here too (names chips.tasks.*).
"""
from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django_scopes import scope, scopes_disabled

from billing import limits
from proxies import services as proxy_services
from waha import manager
from waha import tasks as waha_tasks
from waha.client import SessionNotFound, WahaError, WahaRequestError
from waha.manager import WahaManagerError
from waha.models import WahaSession
from waha.runtime import RuntimeFailure
from waha.tasks import TRANSIENT
from whago import services as accounts
from whago.models import Tenant
from whago.tasks import TenantTask, tenant_of_row

from . import outgoing
from .errors import ChipError, ChipLimitReached, ChipNotReady, container_error, redacted
from .events import chip_changed, chip_data
from .models import Chip
from .phones import normalize_phone, phone_from_chat_id

log = logging.getLogger(__name__)


def _now() -> datetime:
    return timezone.now()


def _set_status(chip: Chip, status: str, **fields: Any) -> None:
    """Move the chip to a status (Chip.move_to, the one writer of a chip's status) and announce the change."""
    old = chip.move_to(status, **fields)
    chip_changed(chip, old)


def _refused(chip: Chip, action: str) -> ChipNotReady:
    """What the tenant is told when the chip's status does not allow an action (Chip.can)."""
    return ChipNotReady(_("%(action)s is not possible while the chip is %(status)s.") % {
        "action": Chip.Action(action).label, "status": chip.get_status_display()})


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
    with scope(tenant=chip.tenant_id):
        return WahaSession.objects.select_related("container").get(pk=chip.waha_session_id)


def chips_in_use(tenant: Tenant) -> int:
    """Chips counted against the plan: every chip not deleted."""
    with scope(tenant=tenant.pk):
        return Chip.objects.filter(tenant_id=tenant.pk).count()


def limit_message(tenant: Tenant, in_use: int | None = None) -> str:
    limit = limits.chip_limit(tenant)
    count = chips_in_use(tenant) if in_use is None else in_use
    return _(
        "Your plan allows %(limit)s chip(s) and you have %(count)s. Upgrade your plan on the Billing page to add more."
    ) % {"limit": limit, "count": count}


def create_chip(tenant: Tenant, alias: str) -> Chip:
    """A new chip (PROVISIONING) within the plan's limit; its WAHA session is created by the worker."""
    alias = (alias or "").strip()[:80]
    if not alias:
        raise ChipError(_("Give the chip a name."), "invalid")
    if not accounts.may_connect_numbers(tenant):
        raise ChipError(_("Confirm your e-mail address first (we sent you a link): a WhatsApp number is "
                          "connected once it is confirmed."), "email_unconfirmed")
    with scope(tenant=tenant.pk), transaction.atomic():
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
        transaction.on_commit(lambda: provision_chip.delay(chip.pk, tenant_id=chip.tenant_id))
    return chip


def provision(chip_id: int) -> None:
    """Create (or update) the chip's WAHA session, started; the worker's part of create_chip (run in the
    chip's tenant's scope by provision_chip).

    Raises waha errors: the task retries the transient ones and calls provision_failed.
    """
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


def stalled_provisioning() -> list[tuple[int, int]]:
    """(chip id, tenant id) of every tenant's chips still PROVISIONING with no attempt recorded for
    CHIPS_PROVISION_RETRY_SECONDS."""
    quiet_since = _now() - timedelta(seconds=settings.CHIPS_PROVISION_RETRY_SECONDS)
    with scopes_disabled():
        return list(
            Chip.objects.filter(status=Chip.Status.PROVISIONING, suspended_at=None, updated_at__lt=quiet_since)
            .order_by("pk").values_list("pk", "tenant_id")[:500]
        )


def fail_stale_provisioning() -> int:
    """FAILED, with what to do, for chips PROVISIONING longer than CHIPS_PROVISION_TIMEOUT_MINUTES (every
    tenant's, each failed in its tenant's scope)."""
    since = _now() - timedelta(minutes=settings.CHIPS_PROVISION_TIMEOUT_MINUTES)
    with scopes_disabled():  # a sweep over every tenant's chips
        stale = list(
            Chip.objects.filter(status=Chip.Status.PROVISIONING)
            .filter(Q(status_changed_at__lt=since) | Q(status_changed_at=None, created_at__lt=since))
            .values_list("pk", "tenant_id")[:500]
        )
    for chip_id, tenant_id in stale:
        with scope(tenant=tenant_id), transaction.atomic():
            chip = _locked_chip(chip_id)
            if chip is not None and chip.status == Chip.Status.PROVISIONING:
                _set_status(chip, Chip.Status.FAILED, **chip.problem_fields(Chip.Problem.PROVISION_STALE))
    return len(stale)


def provision_problem(chip_id: int, exc: BaseException, final: bool) -> None:
    """Record why provisioning failed; FAILED (with what to do) once the task gives up."""
    with transaction.atomic():
        chip = _locked_chip(chip_id)
        if chip is None or chip.is_deleted:
            return
        if isinstance(exc, manager.ProxyNotSupported):
            fields = chip.problem_fields(Chip.Problem.PROXY_UNSUPPORTED)
        elif isinstance(exc, manager.PortRangeExhausted | manager.NoServerWithRoom):
            fields = chip.problem_fields(Chip.Problem.NO_ROOM)
        else:
            fields = chip.problem_fields(Chip.Problem.PROVISION_ERROR, redacted(chip, exc))
        if final and chip.may_move_to(Chip.Status.FAILED):
            _set_status(chip, Chip.Status.FAILED, **fields)
        else:
            chip.last_error = fields["last_error"]
            chip.save(update_fields=[*fields, "updated_at"])


def apply_session_status(tenant: Tenant, session_name: str, status: str, me: dict | None, event_ms: int) -> None:
    """Mirror a WAHA session.status event on the chip (stale and repeated events change nothing)."""
    with scope(tenant=tenant.pk):
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
        status = chip.status_for_event(status)
        if not chip.may_move_to(status):
            return
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
        with scope(tenant=chip.tenant_id), transaction.atomic():
            current = _locked_chip(chip.pk)
            if current is not None and current.status == Chip.Status.STARTING:
                _set_status(current, previous)
        if isinstance(exc, SessionNotFound):
            raise
        raise container_error(chip, exc)
    return info if isinstance(info, dict) else {}


# Connecting has nothing to do: the chip is being prepared, linked or connected already.
UNDER_WAY = (Chip.Status.PROVISIONING, Chip.Status.STARTING, Chip.Status.SCAN_QR_CODE, Chip.Status.WORKING)


def connect(chip: Chip) -> Chip:
    """Start the chip's session so it shows a QR code (or reconnects a paired number)."""
    return _start(chip, Chip.Action.CONNECT)


def _start(chip: Chip, action: str) -> Chip:
    """Start the session (provisioned again when the chip has none), if the chip's status allows `action`."""
    with scope(tenant=chip.tenant_id), transaction.atomic():
        locked = Tenant.objects.select_for_update(no_key=True).get(pk=chip.tenant_id)
        chip = _locked_chip(chip.pk)
        if chip is None or chip.is_deleted:
            raise ChipError(_("This chip was deleted."), "not_found")
        if action == Chip.Action.CONNECT and chip.status in UNDER_WAY:
            return chip
        if not chip.can(action):
            raise _refused(chip, action)
        if chip.suspended_at:
            active = Chip.objects.filter(tenant=locked, suspended_at__isnull=True).count()
            if not limits.can_create_chip(locked, active):
                raise ChipLimitReached(limit_message(locked))
            chip.suspended_at = None
        previous = chip.status
        if chip.waha_session_id is None:
            _set_status(chip, Chip.Status.PROVISIONING, last_error="")
            transaction.on_commit(lambda: provision_chip.delay(chip.pk, tenant_id=chip.tenant_id))
            return chip
        # STARTING first: events the session sends while we call WAHA are newer and win.
        _set_status(chip, Chip.Status.STARTING, last_error="")
    method = manager.restart_session if previous == Chip.Status.FAILED else manager.start_session
    try:
        info = _call_session(chip, previous, method)
    except SessionNotFound:
        # The container lost it (recreated without its data): create it again.
        with scope(tenant=chip.tenant_id), transaction.atomic():
            chip = _locked_chip(chip.pk)
            if chip.may_move_to(Chip.Status.PROVISIONING):  # unless its events moved it on meanwhile
                _set_status(chip, Chip.Status.PROVISIONING, last_error="")
                transaction.on_commit(lambda: provision_chip.delay(chip.pk, tenant_id=chip.tenant_id))
        return chip
    return _settle(chip, info)


def _settle(chip: Chip, info: dict) -> Chip:
    """Apply the status WAHA answered, unless a webhook already moved the chip on."""
    with scope(tenant=chip.tenant_id), transaction.atomic():
        current = _locked_chip(chip.pk)
        if current.status == Chip.Status.STARTING and info.get("status") in (
            Chip.Status.SCAN_QR_CODE, Chip.Status.WORKING, Chip.Status.FAILED
        ):
            _start_over(current, info["status"])
        return current


def qr_png(chip: Chip) -> bytes:
    """The current pairing QR code as PNG, fetched from the chip's container."""
    if not chip.can(Chip.Action.PAIR):
        raise ChipNotReady(_("There is no QR code to scan: the chip is %(status)s.") % {
            "status": chip.get_status_display()})
    session = _session_of(chip)
    try:
        return manager.qr(session, "image")
    except (WahaRequestError, SessionNotFound) as exc:
        raise ChipNotReady(_("The QR code is not available yet (%(error)s).") % {"error": redacted(chip, exc)})
    except WahaError as exc:
        raise container_error(chip, exc)


def request_pairing_code(chip: Chip, phone: str) -> str:
    """A code to type on the phone (WhatsApp › Linked devices › Link with phone number)."""
    try:
        number = normalize_phone(phone)
    except ValidationError as exc:
        raise ChipError(exc.messages[0], "invalid_phone")
    if not chip.can(Chip.Action.PAIR):
        raise ChipNotReady(_("A pairing code can only be requested while the chip waits to be linked."))
    session = _session_of(chip)
    try:
        return manager.request_code(session, number.lstrip("+"))
    except (WahaRequestError, SessionNotFound) as exc:
        raise ChipNotReady(_("The pairing code could not be requested (%(error)s).") % {"error": redacted(chip, exc)})
    except WahaError as exc:
        raise container_error(chip, exc)


def disconnect(chip: Chip) -> Chip:
    """Log the number out of WhatsApp and stop the session (DISCONNECTED; connect() links again)."""
    if chip.is_deleted:
        raise ChipError(_("This chip was deleted."), "not_found")
    if chip.status == Chip.Status.DISCONNECTED:
        return chip  # logged out already
    if not chip.can(Chip.Action.DISCONNECT):
        raise _refused(chip, Chip.Action.DISCONNECT)
    if chip.waha_session_id is not None:
        session = _session_of(chip)
        try:
            manager.logout_session(session)
            manager.stop_session(session)
        except SessionNotFound:
            pass  # nothing left to log out
        except WahaError as exc:
            raise container_error(chip, exc)
    with scope(tenant=chip.tenant_id), transaction.atomic():
        chip = _locked_chip(chip.pk)
        if chip.status != Chip.Status.DISCONNECTED and not chip.can(Chip.Action.DISCONNECT):
            raise _refused(chip, Chip.Action.DISCONNECT)  # moved on meanwhile (being prepared again)
        _set_status(chip, Chip.Status.DISCONNECTED, last_error="")
        return chip


def restart(chip: Chip) -> Chip:
    """Restart the chip's session (a paired number reconnects without a new QR).

    A chip stopped or logged out is connected again; one that failed before it had a session is
    provisioned again."""
    if chip.can(Chip.Action.CONNECT):
        return connect(chip)
    if chip.waha_session_id is None:
        return _start(chip, Chip.Action.RESTART)
    with scope(tenant=chip.tenant_id), transaction.atomic():
        chip = _locked_chip(chip.pk)
        if chip is None or chip.is_deleted:
            raise ChipError(_("This chip was deleted."), "not_found")
        if not chip.can(Chip.Action.RESTART):
            raise _refused(chip, Chip.Action.RESTART)
        previous = chip.status
        _set_status(chip, Chip.Status.STARTING, last_error="")
    try:
        info = _call_session(chip, previous, manager.restart_session)
    except SessionNotFound as exc:
        raise container_error(chip, exc)
    return _settle(chip, info)


def rename(chip: Chip, alias: str) -> Chip:
    alias = (alias or "").strip()[:80]
    if not alias:
        raise ChipError(_("Give the chip a name."), "invalid")
    chip.alias = alias
    with scope(tenant=chip.tenant_id):
        Chip.all_objects.filter(pk=chip.pk).update(alias=alias, updated_at=_now())
    return chip


def delete_chip(chip: Chip) -> None:
    """Soft-delete the chip (its messages stay), delete its WAHA session and release its proxy."""
    with scope(tenant=chip.tenant_id), transaction.atomic():
        chip = _locked_chip(chip.pk)
        if chip is None or chip.is_deleted:
            return
        chip.deleted_at = _now()
        _set_status(chip, Chip.Status.STOPPED)
        transaction.on_commit(lambda: _remove_session(chip))


def _remove_session(chip: Chip) -> None:
    """Delete the WAHA session now, or through a retried task when the container does not answer."""
    proxy_services.release(chip.session_name)
    if chip.waha_session_id is None:
        return
    with scope(tenant=chip.tenant_id):
        session = WahaSession.objects.select_related("container").filter(pk=chip.waha_session_id).first()
    if session is None:
        return
    try:
        manager.delete_session(session)
    except WahaError as exc:
        log.warning("session %s of deleted chip %s not deleted yet (%s): retrying in the worker",
                    session.name, chip.pk, exc)
        waha_tasks.delete_session.delay(session.pk, tenant_id=chip.tenant_id)


def stop_chip_session(chip_id: int) -> None:
    """Stop a chip's WAHA session (a lower plan suspended the chip)."""
    chip = Chip.all_objects.filter(pk=chip_id).first()
    if chip is None or chip.waha_session_id is None:
        return
    with contextlib.suppress(SessionNotFound):
        manager.stop_session(_session_of(chip))


def enforce_chip_limit(tenant: Tenant) -> list[Chip]:
    """Stop (not delete) the chips above the plan's limit; lift that stop when they fit again.

    Connected chips are kept first, then the oldest. Returns the chips stopped now.
    """
    limit = limits.chip_limit(tenant)
    with scope(tenant=tenant.pk), transaction.atomic():
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
                transaction.on_commit(lambda pk=chip.pk: stop_chip.delay(pk, tenant_id=tenant.pk))
            elif position < limit and chip.suspended_at is not None:
                chip.suspended_at = None
                chip.last_error = ""
                chip.save(update_fields=["suspended_at", "last_error", "updated_at"])
        return stopped


def reapply_proxy(session_name: str) -> None:
    """Give the chip's WAHA session its new proxy (WAHA restarts a running session on update)."""
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



# --- tasks (the worker's part; names kept as chips.tasks.* for queued tasks, beat and routes) ---------

PROVISION_RETRIES = 5
# What may come back by itself: the Docker engine or a server unreachable, no room left. The chip
# stays PROVISIONING (the tenant sees that WHAGO keeps trying); the task retries with backoff,
# then provision_sweep takes over until CHIPS_PROVISION_TIMEOUT_MINUTES.
WAITING = (*TRANSIENT, RuntimeFailure, manager.PortRangeExhausted, manager.NoServerWithRoom)


# The tasks working for one chip are TenantTasks (queued with tenant_id=, run in its scope); one queued in
# its old form (no tenant_id) before a deploy runs in the chip's tenant.
_CHIP_TENANT = tenant_of_row(Chip.all_objects)


@shared_task(base=TenantTask, name="chips.tasks.provision_chip", bind=True, acks_late=True,
             max_retries=PROVISION_RETRIES, legacy_tenant=_CHIP_TENANT)
def provision_chip(self, tenant: Tenant, chip_id: int) -> None:
    """Create the chip's WAHA session (and the tenant's container when needed)."""
    try:
        provision(chip_id)
    except WAITING as exc:
        provision_problem(chip_id, exc, final=False)
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=min(5 * 2**self.request.retries, 120))
    except (WahaError, WahaManagerError) as exc:
        provision_problem(chip_id, exc, final=True)


@shared_task(name="chips.tasks.provision_sweep")
def provision_sweep() -> dict:
    """Provisioning that stopped half-way (its task gave up, or died with its worker) is tried
    again; past CHIPS_PROVISION_TIMEOUT_MINUTES the chip fails with what to do."""
    failed = fail_stale_provisioning()
    waiting = stalled_provisioning()
    for chip_id, tenant_id in waiting:
        provision_chip.delay(chip_id, tenant_id=tenant_id)
    return {"retried": len(waiting), "failed": failed}


@shared_task(base=TenantTask, name="chips.tasks.stop_chip", autoretry_for=TRANSIENT, retry_backoff=5,
             retry_kwargs={"max_retries": 3}, legacy_tenant=_CHIP_TENANT)
def stop_chip(tenant: Tenant, chip_id: int) -> None:
    """Stop the session of a chip the plan limit suspended."""
    stop_chip_session(chip_id)


@shared_task(base=TenantTask, name="chips.tasks.reapply_proxy",
             autoretry_for=(*TRANSIENT, proxy_services.ProxyUnavailable), retry_backoff=5,
             retry_kwargs={"max_retries": 5}, legacy_tenant=tenant_of_row(Chip.all_objects, "session_name"))
def reapply_proxy_task(tenant: Tenant, session_name: str) -> None:
    """Give a chip's session its new proxy after the proxies app moved it."""
    reapply_proxy(session_name)
