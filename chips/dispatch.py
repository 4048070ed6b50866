"""Campaign dispatch: every recipient sent exactly once, by lanes running in the Celery worker.

Lanes
    A running campaign has one lane per chip (CampaignChip). A lane is a short Celery task
    (run_lane) holding the lane's lease. It loops: campaign still RUNNING and in its send
    window? chip WORKING? chip's pace slot due? Then it claims the next recipients and sends
    them, and after CAMPAIGN_LANE_SLICE_SECONDS hands over to a follow-up task. Nothing is
    assigned to a chip in advance, so when a chip stops working its lane ends and the other
    lanes take the remaining recipients. Pause and cancel are read between two sends (at
    most about a second apart), so they take effect within seconds.

Recipients: pending → claimed → sent | failed | skipped
    1. claim: SELECT … FOR UPDATE SKIP LOCKED of pending rows, set claimed with the lane's
       token, committed before anything is sent: two lanes never hold the same recipient.
    2. consent and opt-out are read again: no consent or unsubscribed → skipped.
    3. quota: billing.limits.reserve_messages for the batch; none left → the campaign is
       paused with the reason and the claims go back to pending.
    4. the messages are created with the idempotency key campaign-<id>-recipient-<id>
       (unique per tenant: one live message per recipient), already leased by the lane's
       Sender (chips/sending.py: that is their claim), and linked to the recipients, in one
       transaction, only while the lane still holds the claims.
    5. the Sender hands them to WAHA one by one and records the outcomes in batches;
    6. with each record, the recipients take their messages' outcome (only while they still
       hold the lane's token): a few statements per batch, none per message.

Crashes
    A lane killed anywhere leaves claimed rows whose lane lease expires. kick() — beat, every
    few seconds, safe to run concurrently — recovers them by looking at the message: none, or
    not held and not handed over → deleted (quota given back) and the recipient pending again;
    sent or failed → the recipient takes that; leased by a dead sender → settled from evidence
    first (chips.sending.settle: WAHA's acks and record of the chat; never sent twice). Then it
    relaunches lanes whose lease expired. A task delivered twice finds the lease taken or the
    recipients no longer pending, and does nothing.

Pace
    ChipPace.next_send_at per chip, taken by a conditional update: a send starts only when the
    chip's slot is due and pushes it one interval (60 / messages per minute) further, whatever
    the number of lanes, campaigns and workers using that chip.
"""
from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from functools import partial

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import CharField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from django.utils.translation import gettext as _
from django_scopes import scope, scopes_disabled

from billing import limits
from waha.models import WahaSession
from whago.bulk import update_rows
from whago.models import Tenant
from whago.tasks import TenantTask, tenant_of_row

from . import campaigns, sending
from .models import Campaign, CampaignChip, CampaignRecipient, Chip, ChipPace, Message

log = logging.getLogger(__name__)

R = CampaignRecipient.Status
RUNNING = Campaign.Status.RUNNING
SENT_STATUSES = (Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ)

# What send_batch did: nothing left to claim, a batch sent, the campaign stopped, the chip refused.
EMPTY, DONE, STOP, CHIP_DOWN = "empty", "done", "stop", "chip_down"


def _now():
    return timezone.now()


def recipient_key(campaign_id: int, recipient_id: int | str) -> str:
    """The idempotency key of a recipient's message: at most one live message per recipient."""
    return f"campaign-{campaign_id}-recipient-{recipient_id}"


# --- lanes ---------------------------------------------------------------------------------


def acquire(campaign_id: int, chip_id: int, token: uuid.UUID, hold: float | None = None) -> bool:
    """Take a lane's lease when it is free or expired, or renew it with its own token."""
    now = _now()
    until = now + timedelta(seconds=settings.CAMPAIGN_LEASE_SECONDS if hold is None else hold)
    return bool(
        CampaignChip.objects.filter(campaign_id=campaign_id, chip_id=chip_id)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_token=token))
        .update(lease_token=token, lease_until=until)
    )


def release(campaign_id: int, chip_id: int, token: uuid.UUID) -> None:
    CampaignChip.objects.filter(campaign_id=campaign_id, chip_id=chip_id, lease_token=token).update(
        lease_token=None, lease_until=None)


def launch_lanes(campaign: Campaign) -> int:
    """Start a lane (after commit) for each WORKING chip of a running campaign whose lane is free."""
    if campaign.status != RUNNING or not campaign.in_window():
        return 0
    launched = 0
    chip_ids = list(
        CampaignChip.objects.filter(campaign_id=campaign.pk, chip__status=Chip.Status.WORKING,
                                    chip__deleted_at__isnull=True)
        .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=_now()))
        .values_list("chip_id", flat=True)
    )
    for chip_id in chip_ids:
        token = uuid.uuid4()
        if acquire(campaign.pk, chip_id, token):
            transaction.on_commit(partial(run_campaign_lane.delay, campaign.pk, chip_id, str(token),
                                          tenant_id=campaign.tenant_id))
            launched += 1
    return launched


def take_slot(chip_id: int, interval: float) -> float:
    """0.0 when the chip may start a send now (its next slot moves one interval on), else seconds to wait."""
    now = _now()
    following = now + timedelta(seconds=interval)
    if ChipPace.objects.filter(chip_id=chip_id, next_send_at__lte=now).update(next_send_at=following):
        return 0.0
    due = ChipPace.objects.filter(chip_id=chip_id).values_list("next_send_at", flat=True).first()
    if due is None:
        try:
            with transaction.atomic():
                ChipPace.objects.create(chip_id=chip_id, next_send_at=following)
            return 0.0
        except IntegrityError:  # another lane created it a moment ago: its slot is taken
            return interval
    return max(0.0, (due - now).total_seconds())


def _continue_later(campaign: Campaign, chip_id: int, token: uuid.UUID, countdown: float = 0.0) -> None:
    acquire(campaign.pk, chip_id, token, hold=countdown + settings.CAMPAIGN_LEASE_SECONDS)
    run_campaign_lane.apply_async((campaign.pk, chip_id, str(token)), {"tenant_id": campaign.tenant_id},
                                  countdown=countdown)


def run_lane(campaign_id: int, chip_id: int, token: str | uuid.UUID) -> None:
    """Send a campaign's recipients through one chip for one slice of time (the lane task's body, run in
    the campaign's tenant's scope)."""
    token = uuid.UUID(str(token))
    deadline = time.monotonic() + settings.CAMPAIGN_LANE_SLICE_SECONDS
    if not acquire(campaign_id, chip_id, token):
        return  # another lane holds it (a task delivered twice, or a newer lane)
    while True:
        campaign = Campaign.objects.select_related("tenant").filter(pk=campaign_id).first()
        chip = Chip.objects.filter(pk=chip_id).first()
        if (campaign is None or campaign.status != RUNNING or not campaign.in_window()
                or chip is None or chip.status != Chip.Status.WORKING):
            # Paused, canceled, out of the window, or the chip stopped: the kick relaunches it.
            release(campaign_id, chip_id, token)
            return
        interval = campaign.send_interval()
        if interval:
            wait = take_slot(chip_id, interval)
            if wait > 0:
                if wait > settings.CAMPAIGN_INLINE_WAIT_SECONDS or time.monotonic() + wait > deadline:
                    _continue_later(campaign, chip_id, token, wait)
                    return
                time.sleep(wait)
                acquire(campaign_id, chip_id, token)
                continue
        outcome = send_batch(campaign, chip, token, 1 if interval else settings.CAMPAIGN_BATCH_SIZE)
        if outcome == STOP:
            release(campaign_id, chip_id, token)
            return
        if outcome == CHIP_DOWN:
            # The chip refused a send although it looked connected: let the others work meanwhile.
            CampaignChip.objects.filter(campaign_id=campaign_id, chip_id=chip_id).update(
                retry_at=_now() + timedelta(seconds=settings.CAMPAIGN_CHIP_BACKOFF_SECONDS))
            release(campaign_id, chip_id, token)
            return
        if outcome == EMPTY:
            release(campaign_id, chip_id, token)
            finish_if_done(campaign)
            return
        if time.monotonic() >= deadline:
            _continue_later(campaign, chip_id, token)
            return
        acquire(campaign_id, chip_id, token)


# --- one batch ---------------------------------------------------------------------------------


def _claim(campaign: Campaign, chip: Chip, token: uuid.UUID, size: int) -> list[int]:
    with transaction.atomic():
        ids = list(
            CampaignRecipient.objects.select_for_update(skip_locked=True)
            .filter(campaign_id=campaign.pk, status=R.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)[:size]
        )
        if ids:
            CampaignRecipient.objects.filter(pk__in=ids).update(
                status=R.CLAIMED, claim_token=token, claimed_at=_now(), chip=chip)
    return ids


def _settle(recipient_id: int, token: uuid.UUID, status: str, **fields) -> bool:
    """Record a claimed recipient's outcome, if the claim is still this lane's."""
    return bool(
        CampaignRecipient.objects.filter(pk=recipient_id, claim_token=token, status=R.CLAIMED).update(
            status=status, claim_token=None, **fields)
    )


def _unclaim(recipient_ids: list[int], token: uuid.UUID) -> None:
    CampaignRecipient.objects.filter(pk__in=recipient_ids, claim_token=token, status=R.CLAIMED).update(
        status=R.PENDING, claim_token=None, claimed_at=None, chip=None)


def _create_messages(campaign: Campaign, chip: Chip, items: list, token: uuid.UUID, reservation,
                     sender: sending.Sender) -> list[tuple]:
    """Create the messages of the claimed recipients still held by this lane, leased by its sender;
    returns (recipient, message)."""
    media = campaign.media.name if campaign.media else ""
    kind = campaign.media_kind if media else Message.Kind.TEXT
    with transaction.atomic():
        mine = set(
            CampaignRecipient.objects.select_for_update()
            .filter(pk__in=[r.pk for r, _text in items], claim_token=token, status=R.CLAIMED)
            .values_list("pk", flat=True)
        )
        items = [(r, text) for r, text in items if r.pk in mine]
        lease = sender.lease_fields()
        messages = [
            Message(
                tenant=campaign.tenant, chip=chip, direction=Message.Direction.OUT, peer=r.phone,
                peer_name=r.name[:128], kind=kind, body=text, media=media, media_name=campaign.media_name,
                media_mimetype=campaign.media_mimetype, status=Message.Status.QUEUED, reservation=reservation,
                source=f"campaign:{campaign.pk}", idempotency_key=recipient_key(campaign.pk, r.pk), **lease,
            )
            for r, text in items
        ]
        Message.objects.bulk_create(messages)
        for (recipient, _text), message in zip(items, messages, strict=True):
            recipient.message_id = message.pk
            message.chip = chip
        recipients = [r for r, _text in items]
        if all(r.message_id for r in recipients):  # the insert returned the ids (PostgreSQL, SQLite ≥ 3.35)
            update_rows(CampaignRecipient.objects.all(), recipients, ["message"])
        else:
            # Each recipient finds its message by its idempotency key (one indexed lookup each, one statement).
            key = Concat(Value(recipient_key(campaign.pk, "")), Cast(OuterRef("pk"), CharField()))
            CampaignRecipient.objects.filter(pk__in=[r.pk for r in recipients]).update(message_id=Subquery(
                Message.objects.filter(tenant_id=campaign.tenant_id, idempotency_key=key).values("pk")[:1]))
    sender.hold(messages)
    unused = reservation.quantity - len(items)
    if unused > 0:
        limits.release_reservation(reservation, unused)
    return [(r, m) for (r, _text), m in zip(items, messages, strict=True)]


def _recipients_follow(token: uuid.UUID):
    """The on_record hook of a lane's sender: recipients take their messages' recorded outcome."""
    def follow(messages: list[Message]) -> None:
        _settle_batch([m.pk for m in messages if m.status in SENT_STATUSES],
                      [m.pk for m in messages if m.status == Message.Status.FAILED], token)
    return follow


def send_batch(campaign: Campaign, chip: Chip, token: uuid.UUID, size: int) -> str:
    """Claim up to `size` recipients and send them through the chip; EMPTY when none is left."""
    ids = _claim(campaign, chip, token, size)
    if not ids:
        return EMPTY
    recipients = list(
        CampaignRecipient.objects.filter(pk__in=ids, claim_token=token, status=R.CLAIMED)
        .select_related("contact").order_by("pk")
    )
    items = []
    for recipient in recipients:
        reason = campaigns.skip_reason(recipient.contact)
        if reason:
            _settle(recipient.pk, token, R.SKIPPED, error=reason)
            continue
        contact = recipient.contact
        text = campaigns.render(campaign.template, contact.name, contact.phone, contact.fields)
        missing = campaigns.holes(campaign.template, contact.name, contact.fields)
        if missing:  # the contact lost a value after the start: never send a message with a hole
            _settle(recipient.pk, token, R.SKIPPED, error=_("no value for %(variables)s") % {
                "variables": ", ".join("{" + key + "}" for key in missing)})
        elif not text and not campaign.media:
            _settle(recipient.pk, token, R.FAILED, error=_("the message is empty for this contact"))
        elif len(text) > campaigns.MAX_TEXT_LENGTH:
            _settle(recipient.pk, token, R.FAILED, error=_("the message is too long for this contact"))
        else:
            items.append((recipient, text))
    if not items:
        return DONE
    reservation = _reserve(campaign, items, token)
    if reservation is None:
        return STOP
    items = items[:reservation.quantity]
    sender = sending.Sender(on_record=_recipients_follow(token))
    pairs = _create_messages(campaign, chip, items, token, reservation, sender)
    session = WahaSession.objects.select_related("container").filter(pk=chip.waha_session_id).first()
    if session is not None:
        chip.waha_session = session  # the sender reads the messages' session from their chip
    outcome, checked, refused, unsent = DONE, time.monotonic(), [], []
    with sender:
        for position, (_recipient, message) in enumerate(pairs):
            if time.monotonic() - checked > 0.5:
                # Between two sends of a large batch: a pause, a cancel or a chip going down takes effect
                # now, and the lease is renewed.
                checked = time.monotonic()
                acquire(campaign.pk, chip.pk, token)
                stopped = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).first() != RUNNING
                if stopped or not Chip.objects.filter(pk=chip.pk, status=Chip.Status.WORKING).exists():
                    unsent, outcome = pairs[position:], STOP
                    break
            if sender.send(message, session) == sending.RETRY:
                # The message never reached WhatsApp: the chip or its server refused it. Another chip may
                # take it now; this lane stops for a while.
                refused, unsent, outcome = [pairs[position]], pairs[position + 1:], CHIP_DOWN
                break
        sender.release([m for _r, m in unsent])
    for recipient, message in refused:
        _requeue(recipient.pk, message.pk, token, count_retry=True)
    for recipient, message in unsent:
        _requeue(recipient.pk, message.pk, token, count_retry=False)
    return outcome


def _reserve(campaign: Campaign, items: list, token: uuid.UUID):
    """The quota for a batch's messages; what is left of it when less than the batch (the rest goes
    back to the pool). None when nothing is left: the campaign is paused with the reason."""
    try:
        return limits.reserve_messages(campaign.tenant, len(items))
    except limits.QuotaExceeded as exc:
        refusal = exc
    if 0 < refusal.available < len(items):
        try:
            reservation = limits.reserve_messages(campaign.tenant, refusal.available)
        except limits.QuotaExceeded as exc:  # spent elsewhere meanwhile
            refusal = exc
        else:
            _unclaim([r.pk for r, _text in items[reservation.quantity:]], token)
            return reservation
    _unclaim([r.pk for r, _text in items], token)
    campaign.transition(Campaign.Status.PAUSED, refusal.message)
    log.info("campaign %s paused: out of quota", campaign.pk)
    return None


def _settle_batch(sent_ids: list[int], failed_ids: list[int], token: uuid.UUID) -> None:
    """Give the recipients of recorded messages their outcome (a statement per outcome, none per message)."""
    message = Message.objects.filter(pk=OuterRef("message_id"))
    if sent_ids:
        CampaignRecipient.objects.filter(message_id__in=sent_ids, claim_token=token, status=R.CLAIMED).update(
            status=R.SENT, claim_token=None, error="", sent_at=Subquery(message.values("sent_at")[:1]))
    if failed_ids:
        CampaignRecipient.objects.filter(message_id__in=failed_ids, claim_token=token, status=R.CLAIMED).update(
            status=R.FAILED, claim_token=None, error=Subquery(message.values("error")[:1]))
    # Anything else (in doubt) is settled from evidence by the send sweep, then by recover().


def _drop_unsent(message: Message) -> None:
    """Delete a message that provably never reached WhatsApp, giving its quota back."""
    reservation = message.reservation
    message.delete()
    if reservation is not None:
        limits.release_reservation(reservation, 1)


def _requeue(recipient_id: int, message_id: int, token: uuid.UUID, count_retry: bool) -> None:
    """Give a claimed recipient whose message never reached WhatsApp back to the pending pool."""
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(skip_locked=True, of=("self",)).select_related("reservation")
            .filter(pk=message_id, status=Message.Status.QUEUED, lease_token__isnull=True).first()
        )
        recipient = CampaignRecipient.objects.select_for_update().filter(
            pk=recipient_id, claim_token=token, status=R.CLAIMED).first()
        if message is None or recipient is None:
            return  # held by a sender right now, or no longer this lane's: the owner settles it
        reason = message.error
        _drop_unsent(message)
        retries = recipient.retries + (1 if count_retry else 0)
        if retries >= settings.CAMPAIGN_MAX_RETRIES:
            _settle(recipient_id, token, R.FAILED, retries=retries, message=None,
                    error=_("Not sent after %(n)s attempts: %(reason)s") % {"n": retries, "reason": reason})
        else:
            CampaignRecipient.objects.filter(pk=recipient_id).update(
                status=R.PENDING, claim_token=None, claimed_at=None, chip=None, message=None, retries=retries,
                error=reason[:2000])


def finish_if_done(campaign: Campaign) -> bool:
    """Complete a running campaign once no recipient is pending or being sent."""
    if CampaignRecipient.objects.filter(campaign_id=campaign.pk, status__in=[R.PENDING, R.CLAIMED]).exists():
        return False
    return campaign.transition(Campaign.Status.COMPLETED)


# --- recovery and the kick ------------------------------------------------------------------------


def _back_to_pool(recipient: CampaignRecipient, campaign_status: str) -> None:
    if campaign_status == Campaign.Status.CANCELED:
        fields = {"status": R.SKIPPED, "error": _("campaign canceled")}
    else:
        fields = {"status": R.PENDING}
    CampaignRecipient.objects.filter(pk=recipient.pk).update(claim_token=None, claimed_at=None, chip=None,
                                                             message=None, **fields)


def recover(recipient_id: int, token: uuid.UUID) -> bool:
    """Settle a claim whose lane died, from what its message shows; True when it changed. Run in the
    claim's tenant's scope (kick)."""
    message_id_ = CampaignRecipient.objects.filter(
        pk=recipient_id, status=R.CLAIMED, claim_token=token).values_list("message_id", flat=True).first()
    if message_id_ is not None:
        # Leased by a sender that is gone: settled from evidence first (never a second send).
        sending.settle(message_id_)
    with transaction.atomic():
        recipient = (
            CampaignRecipient.objects.select_for_update(skip_locked=True)
            .select_related("campaign")
            .filter(pk=recipient_id, status=R.CLAIMED, claim_token=token)
            .first()
        )
        if recipient is None:
            return False
        if recipient.message_id is None:
            _back_to_pool(recipient, recipient.campaign.status)
            return True
        message = (
            Message.objects.select_for_update(skip_locked=True, of=("self",)).select_related("reservation")
            .filter(pk=recipient.message_id).first()
        )
        if message is None:
            return False  # a sender holds it right now
        if message.status == Message.Status.QUEUED:
            if message.lease_token is not None:
                return False  # still leased (a live sender, or WAHA not asked yet): later
            _drop_unsent(message)
            _back_to_pool(recipient, recipient.campaign.status)
            return True
        _settle_from(recipient, message, token)
    return True


def _settle_from(recipient: CampaignRecipient, message: Message, token: uuid.UUID) -> None:
    if message.status in SENT_STATUSES:
        _settle(recipient.pk, token, R.SENT, sent_at=message.sent_at, error="")
    else:
        _settle(recipient.pk, token, R.FAILED, error=message.error)


def stale_claims() -> list[tuple[int, uuid.UUID, int]]:
    """(recipient id, claim token, tenant id) of the claimed recipients whose lane no longer holds a live
    lease with the claim's token, over every tenant."""
    now = _now()
    grace = now - timedelta(seconds=settings.CAMPAIGN_LEASE_SECONDS)
    with scopes_disabled():
        # Claims first, then the leases: a lease read afterwards is at least as new as the claim.
        claims = list(
            CampaignRecipient.objects.filter(status=R.CLAIMED, claimed_at__lt=grace)
            .values_list("pk", "campaign_id", "chip_id", "claim_token", "tenant_id")[:5000]
        )
        if not claims:
            return []
        live = set(
            CampaignChip.objects.filter(campaign_id__in={c[1] for c in claims}, lease_until__gt=now)
            .values_list("campaign_id", "chip_id", "lease_token")
        )
    return [(pk, token, tenant_id) for pk, campaign_id, chip_id, token, tenant_id in claims
            if (campaign_id, chip_id, token) not in live]


def kick() -> dict:
    """Beat: start due scheduled campaigns, recover dead lanes' claims, relaunch lanes, complete campaigns.

    Safe to run concurrently with itself and with the lanes (row locks, guarded updates, leases).
    Cross-tenant: the campaigns and claims are found with the guard off, each handled in its tenant's scope.
    """
    now = _now()
    result = {"started": 0, "recovered": 0, "lanes": 0, "completed": 0}
    with scopes_disabled():  # a sweep over every tenant's campaigns
        for campaign in Campaign.objects.filter(status=Campaign.Status.SCHEDULED, start_at__lte=now):
            with scope(tenant=campaign.tenant_id):
                try:
                    if campaigns.start(campaign, scheduled=True).status == RUNNING:
                        result["started"] += 1
                except campaigns.CampaignError as exc:
                    if campaign.status_reason != exc.message[:500]:
                        Campaign.objects.filter(pk=campaign.pk).update(status_reason=exc.message[:500])
        for recipient_id, token, tenant_id in stale_claims():
            try:
                with scope(tenant=tenant_id):
                    result["recovered"] += recover(recipient_id, token)
            except Exception:  # noqa: BLE001 - one bad row must not stop the sweep; logged
                log.exception("campaign recipient %s not recovered", recipient_id)
        for campaign in Campaign.objects.filter(status=RUNNING).select_related("tenant"):
            with scope(tenant=campaign.tenant_id):
                if finish_if_done(campaign):
                    result["completed"] += 1
                else:
                    with transaction.atomic():
                        result["lanes"] += launch_lanes(campaign)
    return result


# --- tasks ------------------------------------------------------------------------------------------


@shared_task(base=TenantTask, name="chips.tasks.run_campaign_lane", acks_late=True,
             legacy_tenant=tenant_of_row(Campaign.objects))
def run_campaign_lane(tenant: Tenant, campaign_id: int, chip_id: int, token: str) -> None:
    """Send a running campaign's recipients through one chip for one slice of time (queued with tenant_id=,
    run in its scope; one queued in its old form runs in the campaign's tenant)."""
    run_lane(campaign_id, chip_id, token)


@shared_task(name="chips.tasks.kick_campaigns", expires=30)
def kick_campaigns() -> dict:
    """Beat: start scheduled campaigns, take over the work of dead workers, complete finished campaigns."""
    return kick()
