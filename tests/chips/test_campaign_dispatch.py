"""Campaigns sent by real Celery workers to chips in real WAHA simulators (over HTTP), with webhooks back.

- A worker SIGKILLed mid-campaign and another one started: every recipient is sent exactly once
  (counted in the simulator's own record), at the chip's pace, and a chip that fails mid-campaign
  leaves its share to the other chip; consent and opt-out are honoured.
- Pause, resume and cancel take effect within seconds; running out of quota pauses the campaign
  with the reason; opt-outs carry over to the next campaign.
"""
import csv
import io
import re
import time
from datetime import time as clock
from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.translation import gettext as _
from django_scopes import scopes_disabled

from billing import limits
from billing.models import CreditLedger, Plan, UsageCounter
from chips import campaigns, contacts, tasks
from chips.models import Campaign, CampaignRecipient, ChipPace, Contact, Message
from tests import waiting

from .campaignkit import campaign_workers, sim_chips, wait_until  # noqa: F401 - fixtures
from .conftest import set_plan

pytestmark = [pytest.mark.django_db(transaction=True)]

R = CampaignRecipient.Status
BODY = "Oferta WHAGO"


def consenting(tenant, phone: str, name: str, lists, **fields):
    return contacts.save_contact(tenant, phone=phone, name=name, consent_source="site",
                                 consent_at=timezone.now() - timedelta(days=1), fields=fields, lists=list(lists))


def new_campaign(tenant, lists, chips, pace=60, name="Promo", template=BODY + " para {primeiro_nome} ({cidade})"):
    return campaigns.save_campaign(tenant, name=name, template=template, lists=lists, chips=chips,
                                   window_days=list(range(7)), window_start=clock(0, 0), window_end=clock(23, 59),
                                   pace_per_minute=pace)


def status_of(campaign) -> str:
    with scopes_disabled():
        return Campaign.objects.get(pk=campaign.pk).status


def recipients(campaign) -> dict[str, CampaignRecipient]:
    with scopes_disabled():
        return {r.phone: r for r in CampaignRecipient.objects.filter(campaign=campaign).select_related("message")}


def sent_count(campaign) -> int:
    with scopes_disabled():
        return CampaignRecipient.objects.filter(campaign=campaign, status=R.SENT).count()


def chat(phone: str) -> str:
    return phone.lstrip("+") + "@c.us"


def kick_until(predicate, timeout: float, message: str):
    """Send the beat's kick through the broker every second (as beat would) until predicate() holds."""
    give_up = waiting.deadline(timeout)
    while not predicate():
        if time.monotonic() > give_up:
            pytest.fail(f"timed out after {timeout} s waiting for {message}")
        tasks.kick_campaigns.delay()
        time.sleep(1.0)


def lanes_idle(chips, interval: float) -> bool:
    """Every chip is between two sends: its last slot was taken 0.3–0.8 intervals ago."""
    now = timezone.now()
    with scopes_disabled():
        paces = {p.chip_id: p.next_send_at for p in ChipPace.objects.filter(chip__in=chips)}
    if len(paces) < len(chips):
        return False
    return all(0.3 * interval <= (now - (due - timedelta(seconds=interval))).total_seconds() <= 0.8 * interval
               for due in paces.values())


def test_sigkill_mid_campaign_then_restart_sends_everyone_exactly_once_at_pace(
        live_server, sim_chips, campaign_workers, make_owner, client):  # noqa: F811
    _user, tenant = make_owner()
    set_plan(tenant, "BUSINESS")  # pace up to 60 per minute per chip
    chip_a, chip_b = sim_chips.make(tenant, ["5511999990001", "5511999990002"])
    sim_chips.behaviour(chip_a, read_ms=300)  # the fake phones read what they receive
    clients, vips = contacts.create_list(tenant, "Clientes"), contacts.create_list(tenant, "VIP")
    eligible = []
    for n in range(12):
        eligible.append(consenting(tenant, f"+5511988{n:06d}", f"Cliente {n} Silva", [clients], cidade="Campinas"))
    for n in range(12, 14):  # also in the second list: still one message each
        eligible.append(consenting(tenant, f"+5511988{n:06d}", f"Vip {n}", [clients, vips], cidade="Santos"))
    no_consent = contacts.save_contact(tenant, phone="+5511977000001", name="Sem consentimento", lists=[clients])
    opted_out = consenting(tenant, "+5511977000002", "Saiu antes", [vips], cidade="Rio")
    late_opt_out = eligible.pop()  # the last in line: opts out while the campaign runs
    worker = campaign_workers()

    # Opted out before the campaign, through a real inbound message: one confirmation sent by the worker.
    sim_chips.inbound(chip_b, opted_out.phone.lstrip("+"), "Sair")
    wait_until(lambda: sim_chips.sends_by_chat([chip_b]).get(chat(opted_out.phone)) == 1, 20,
               message="the opt-out confirmation")

    campaign = campaigns.start(new_campaign(tenant, [clients, vips], [chip_a, chip_b], pace=60))
    assert campaign.status == Campaign.Status.RUNNING
    sim_chips.inbound(chip_a, late_opt_out.phone.lstrip("+"), "PARAR")

    # Let it send a few, then kill the worker between two sends.
    wait_until(lambda: sent_count(campaign) >= 4, 30, message="4 recipients sent")
    wait_until(lambda: lanes_idle([chip_a, chip_b], 1.0), 10, interval=0.01, message="both lanes between sends")
    worker.kill()
    killed_at = timezone.now()
    sent_before = sum(sim_chips.sends_by_chat([chip_a, chip_b], BODY).values())
    time.sleep(2.5)  # nothing sends while no worker runs
    assert sum(sim_chips.sends_by_chat([chip_a, chip_b], BODY).values()) == sent_before
    assert status_of(campaign) == Campaign.Status.RUNNING

    # Another worker; the beat's kick takes over the dead lanes once their leases expired.
    second_worker = campaign_workers()
    kick_until(lambda: sent_count(campaign) >= sent_before + 4, 30, "sending to resume after the restart")
    # It was the kick, in the new worker, that relaunched the dead worker's lanes.
    relaunched = [int(n) for n in re.findall(r"kick_campaigns\[[^]]+\] succeeded in [\d.]+s: .*'lanes': (\d+)",
                                             second_worker.log())]
    assert sum(relaunched) >= 1, second_worker.log()[-3000:]
    # Chip B fails: its lane stops, chip A takes the rest.
    sim_chips.fail(chip_b)
    wait_until(lambda: sim_chips_status(chip_b) == "FAILED", 15, message="chip B FAILED")
    failed_at = timezone.now()
    kick_until(lambda: status_of(campaign) == Campaign.Status.COMPLETED, 60, "the campaign to complete")

    sends = sim_chips.sends_by_chat([chip_a, chip_b], BODY)
    expected = {chat(c.phone) for c in eligible}
    assert set(sends) == expected, "lost or unexpected recipients"
    assert all(count == 1 for count in sends.values()), f"duplicates: {sends}"
    for contact in (no_consent, opted_out, late_opt_out):
        assert chat(contact.phone) not in sends
    rows = recipients(campaign)
    assert {p for p, r in rows.items() if r.status == R.SENT} == {c.phone for c in eligible}
    assert rows[no_consent.phone].status == R.SKIPPED and rows[no_consent.phone].error == _("no recorded consent")
    assert rows[opted_out.phone].status == R.SKIPPED
    assert rows[late_opt_out.phone].status == R.SKIPPED and rows[late_opt_out.phone].opted_out_at is None
    # The text each one received was rendered for them.
    first = eligible[0]
    with scopes_disabled():
        message = Message.objects.get(pk=rows[first.phone].message_id)
    assert message.body == f"{BODY} para Cliente (Campinas)" and message.source == f"campaign:{campaign.pk}"

    # Pace: per chip, sends start at least one second apart (60 per minute), before and after the kill.
    with scopes_disabled():
        by_chip = {}
        for chip in (chip_a, chip_b):
            starts = sorted(Message.objects.filter(chip=chip, source=f"campaign:{campaign.pk}")
                            .values_list("attempted_at", flat=True))
            by_chip[chip.pk] = starts
            gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
            assert gaps and min(gaps) >= 0.9, f"chip {chip.alias} went faster than 60/min: {gaps}"
            for index, start in enumerate(starts):
                assert sum(1 for s in starts[index:] if s < start + timedelta(seconds=60)) <= 60
        # Chip B sent nothing after it failed; chip A sent the remainder.
        assert all(s < failed_at for s in by_chip[chip_b.pk])
        assert any(s > failed_at for s in by_chip[chip_a.pk])
        assert any(s > killed_at for s in by_chip[chip_a.pk])

    # Acks came back through the webhooks: delivered everywhere, read on chip A's recipients.
    def acked():
        progress = campaigns.progress(campaign)
        return progress["delivered"] == len(eligible) and progress["read"] >= len(by_chip[chip_a.pk])
    wait_until(acked, 20, message="delivery and read acks")
    progress = campaigns.progress(campaign)
    assert (progress["total"], progress["sent"], progress["skipped"], progress["failed"], progress["pending"]) == (
        len(eligible) + 3, len(eligible), 3, 0, 0)

    # A reply is counted on the campaign; the portal shows it all.
    sim_chips.inbound(chip_a, first.phone.lstrip("+"), "Quero!")
    wait_until(lambda: campaigns.progress(campaign)["replied"] == 1, 15, message="the reply")
    from whago.models import Membership

    with scopes_disabled():
        client.force_login(Membership.objects.filter(tenant=tenant).first().user)
    page = client.get(f"/campanhas/{campaign.pk}/progresso/", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-status="completed"' in page and "hx-trigger" not in page  # finished: polling stops
    exported = client.get(f"/campanhas/{campaign.pk}/destinatarios.csv")
    lines = list(csv.reader(io.StringIO(b"".join(exported.streaming_content).decode("utf-8-sig"))))
    assert len(lines) == 1 + len(eligible) + 3
    replied = client.get(f"/campanhas/{campaign.pk}/", {"outcome": "replied"}).context["page"]
    assert [r.phone for r in replied] == [first.phone]
    report = client.get(f"/campanhas/{campaign.pk}/relatorio/")
    assert report.status_code == 200 and sum(report.context["chart"]["sent"]) == len(eligible)
    assert {row["chip"]: row["sent"] for row in report.context["per_chip"]} == {
        chip.alias: len(by_chip[chip.pk]) for chip in (chip_a, chip_b)}
    chip_page = client.get("/campanhas/relatorio-chips/")
    totals = {row["chip"].pk: row["totals"] for row in chip_page.context["report"]["chips"]}
    sender = message.chip_id  # the chip that sent the first recipient the offer gets the reply
    assert totals[sender]["replied"] == 1 and sum(t["replied"] for t in totals.values()) == 1
    # The two STOPs above answered no campaign message (one came before, one before its turn): the chip
    # report counts neither, as the campaign's report doesn't. A recipient who answers the offer with
    # STOP counts once, on the chip that sent it, in both reports.
    assert totals[chip_a.pk]["opted_out"] == totals[chip_b.pk]["opted_out"] == 0
    with scopes_disabled():  # a recipient of chip A (chip B has failed), not the one who replied
        answering = next(c for c in eligible[1:]
                         if Message.objects.get(pk=rows[c.phone].message_id).chip_id == chip_a.pk)
    answering_chip = chip_a
    sim_chips.inbound(answering_chip, answering.phone.lstrip("+"), "SAIR")
    wait_until(lambda: campaigns.progress(campaign)["opted_out"] == 1, 15, message="the opt-out answer")
    chip_page = client.get("/campanhas/relatorio-chips/")
    totals = {row["chip"].pk: row["totals"] for row in chip_page.context["report"]["chips"]}
    assert {pk: t["opted_out"] for pk, t in totals.items()} == {
        chip.pk: int(chip.pk == answering_chip.pk) for chip in (chip_a, chip_b)}


def sim_chips_status(chip) -> str:
    from .campaignkit import chip_status

    return chip_status(chip.pk)


def test_pause_resume_cancel_take_effect_within_seconds_and_quota_pauses_with_the_reason(
        live_server, sim_chips, campaign_workers, make_owner, client):  # noqa: F811
    user, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    (chip,) = sim_chips.make(tenant, ["5511999990003"])
    group = contacts.create_list(tenant, "Todos")
    people = [consenting(tenant, f"+5511966{n:06d}", f"Pessoa {n}", [group], cidade="Sorocaba") for n in range(10)]
    campaign_workers()
    client.force_login(user)
    campaign = new_campaign(tenant, [group], [chip], pace=60)
    assert client.post(f"/campanhas/{campaign.pk}/iniciar/").status_code == 302
    assert status_of(campaign) == Campaign.Status.RUNNING

    def simulator_sends() -> int:
        return sum(sim_chips.sends_by_chat([chip], BODY).values())

    wait_until(lambda: simulator_sends() >= 2, 20, message="2 sends")
    client.post(f"/campanhas/{campaign.pk}/pausar/")
    assert status_of(campaign) == Campaign.Status.PAUSED
    # A send already under way finishes and its claim is let go; then nothing more is sent: what
    # the simulator took is exactly what the database records as sent.
    wait_until(lambda: not recipients_in(campaign, R.CLAIMED), message="the lane to let go of its claims")
    after_pause = simulator_sends()
    assert after_pause == len(recipients_with(campaign, R.SENT))
    time.sleep(2.5)  # an observation window: a slow machine makes this check weaker, never wrong
    assert simulator_sends() == after_pause, "sent while paused"
    assert not recipients_in(campaign, R.CLAIMED)

    client.post(f"/campanhas/{campaign.pk}/retomar/")
    wait_until(lambda: simulator_sends() >= after_pause + 2, 20, message="sending after resume")
    client.post(f"/campanhas/{campaign.pk}/cancelar/")
    assert status_of(campaign) == Campaign.Status.CANCELED
    kick_until(lambda: not recipients_in(campaign, R.CLAIMED, R.PENDING), 15, "claims of the canceled campaign")
    after_cancel = simulator_sends()
    assert after_cancel == len(recipients_with(campaign, R.SENT)) < len(people)
    time.sleep(2.0)  # an observation window, as above
    assert simulator_sends() == after_cancel
    rows = recipients(campaign)
    sent = {p for p, r in rows.items() if r.status == R.SENT}
    assert sent == {"+" + c.split("@")[0] for c in sim_chips.sends_by_chat([chip], BODY)}
    assert all(r.status == R.SKIPPED and r.error == _("campaign canceled") for p, r in rows.items() if p not in sent)

    # One of them opted out by answering: the next campaign skips them.
    quitter = next(iter(sent))
    sim_chips.inbound(chip, quitter.lstrip("+"), "stop")
    wait_until(lambda: Contact_unsubscribed(tenant, quitter), 15, message="the opt-out")

    # Quota: 3 messages left today on the plan, no credits: the next campaign pauses after 3, saying why.
    plan = Plan.objects.get(code="BUSINESS")
    with scopes_disabled():
        UsageCounter.objects.filter(tenant=tenant, period=UsageCounter.Period.DAY).update(
            used=plan.messages_per_day - 3)
    assert limits.credit_balance(tenant) == 0
    second = campaigns.start(new_campaign(tenant, [group], [chip], pace=60, name="Segunda"))
    wait_until(lambda: status_of(second) == Campaign.Status.PAUSED, 20, message="the quota pause")
    with scopes_disabled():
        second = Campaign.objects.get(pk=second.pk)
    assert second.status_reason.startswith(_("Message quota exceeded: %(requested)s message(s) requested, "
                                             "%(available)s left today including credits. Buy credits or upgrade "
                                             "your plan on the Billing page.").split("%")[0])
    assert sent_count(second) == 3
    assert campaigns.progress(second)["pending"] == len(people) - 1 - 3
    page = client.get(f"/campanhas/{second.pk}/").content.decode()
    assert 'id="status-reason"' in page

    # Credits bought: resumed, it completes, the opted-out contact skipped, nobody twice.
    with scopes_disabled():
        CreditLedger.objects.create(tenant=tenant, amount=100, reason=CreditLedger.Reason.ADJUSTMENT, note="test")
    campaigns.resume(second)
    kick_until(lambda: status_of(second) == Campaign.Status.COMPLETED, 30, "the second campaign to complete")
    rows = recipients(second)
    assert rows[quitter].status == R.SKIPPED
    assert rows[quitter].error.startswith(_("opted out on %(date)s").split("%")[0])
    assert sum(1 for r in rows.values() if r.status == R.SENT) == len(people) - 1
    second_sends = sim_chips.sends_by_chat([chip], BODY)
    assert all(count <= 2 for count in second_sends.values())  # at most once per campaign
    assert chat(quitter) in second_sends and second_sends[chat(quitter)] == 1  # only the first campaign's


def recipients_with(campaign, status) -> list:
    with scopes_disabled():
        return list(CampaignRecipient.objects.filter(campaign=campaign, status=status))


def recipients_in(campaign, *statuses) -> bool:
    with scopes_disabled():
        return CampaignRecipient.objects.filter(campaign=campaign, status__in=statuses).exists()


def Contact_unsubscribed(tenant, phone) -> bool:  # noqa: N802
    with scopes_disabled():
        return Contact.objects.filter(tenant=tenant, phone=phone, unsubscribed_at__isnull=False).exists()
