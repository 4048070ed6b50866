"""Benchmark: a 10,000-recipient campaign sent by a real Celery worker to the WAHA simulator, pace unlimited.

Prints `campaign ratio: <x>` = the campaign's throughput (recipients sent per second, from start to
completed, every recipient sent exactly once) / the throughput of a raw sendText loop (WAHA client,
one keep-alive connection, no database) against the same simulator in the same run, half of it
before the campaign and half after. Goal ≥ 0.5. BENCH_CAMPAIGN_RECIPIENTS and BENCH_CAMPAIGN_CHIPS
override the size and the number of chips (one lane, one worker process each).
Loopback only; bounded in count and time. Acks are switched off in the simulator for both runs:
this measures dispatch, not the webhook receiver.
"""
import os
import time
from datetime import time as clock
from datetime import timedelta

import pytest
import redis
from django.utils import timezone
from django_scopes import scopes_disabled

from billing.models import Plan, Subscription
from chips import campaigns, contacts
from chips.models import Campaign, CampaignRecipient, Contact
from tests.bench.cpu import cpu_seconds, used_since
from tests.chips.campaignkit import SimChips, Worker
from waha.client import WahaClient

RECIPIENTS = int(os.environ.get("BENCH_CAMPAIGN_RECIPIENTS", 10_000))
RAW_SENDS = 3_000
CHIPS = int(os.environ.get("BENCH_CAMPAIGN_CHIPS", 4))
TIMEOUT = 600


@pytest.mark.django_db(transaction=True)
def test_campaign_throughput_against_the_raw_send_loop(tmp_path, make_owner, settings):
    assert settings.WHAGO_INSTANCE.startswith("test-"), "run through scripts/test.sh --bench"
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    settings.CAMPAIGN_PACE_LIMITS = ["*=0"]
    _user, tenant = make_owner()
    with scopes_disabled():
        Subscription.objects.filter(tenant=tenant).update(plan=Plan.objects.get(code="ENTERPRISE"),
                                                          status=Subscription.Status.ACTIVE)
    kit = SimChips(tmp_path)
    workers = []
    try:
        phones = [f"55119990{n:05d}" for n in range(CHIPS)]
        chips = kit.make(tenant, phones)
        sim = kit.sim_of[chips[0].pk]
        assert sim.put("/_sim/behaviour", {"server_ms": None, "device_ms": None, "read_ms": None}).ok

        # The raw loop: sendText after sendText through WHAGO's WAHA client, half before and half after
        # the campaign (the machine's load varies; both halves are averaged).
        client = WahaClient(sim.base_url, sim.api_key)
        client.send_text(chips[0].session_name, "5511900000000@c.us", "warm-up")
        raw_seconds = 0.0

        def raw_loop(first: int) -> float:
            began = time.perf_counter()
            for n in range(first, first + RAW_SENDS // 2):
                client.send_text(chips[0].session_name, f"55118{n:08d}@c.us", f"raw {n}")
            return time.perf_counter() - began

        raw_seconds += raw_loop(0)

        group = contacts.create_list(tenant, "Bench")
        consent_at = timezone.now() - timedelta(days=1)
        with scopes_disabled():
            made = Contact.objects.bulk_create(
                [Contact(tenant=tenant, phone=f"+55119{n:08d}", name=f"Pessoa {n}", consent_source="bench",
                         consent_at=consent_at, fields={"cidade": "Campinas"}) for n in range(RECIPIENTS)],
                batch_size=2000,
            )
            Contact.lists.through.objects.bulk_create(
                [Contact.lists.through(contact_id=c.pk, contactlist_id=group.pk) for c in made], batch_size=5000)
        campaign = campaigns.save_campaign(
            tenant, name="Bench", template="Olá {primeiro_nome}, ofertas em {cidade}!", lists=[group], chips=chips,
            window_days=list(range(7)), window_start=clock(0), window_end=clock(23, 59), pace_per_minute=0,
        )
        env = {"CAMPAIGN_PACE_LIMITS": "*=0", "DEBUG": "false"}  # as in production: no query log
        workers.append(Worker(tmp_path / "bench-worker.log", env, pool="prefork", concurrency=CHIPS))

        cpu = cpu_seconds()
        began = time.perf_counter()
        campaigns.start(campaign)
        started_in = time.perf_counter() - began
        deadline = began + TIMEOUT
        while True:
            with scopes_disabled():
                status = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).get()
            if status == Campaign.Status.COMPLETED:
                break
            assert time.perf_counter() < deadline, "campaign not completed in time"
            time.sleep(0.05)
        elapsed = time.perf_counter() - began
        campaign_cpu = used_since(cpu)
        raw_seconds += raw_loop(RAW_SENDS // 2)
        raw_rate = RAW_SENDS / raw_seconds

        with scopes_disabled():
            sent = CampaignRecipient.objects.filter(campaign=campaign, status=CampaignRecipient.Status.SENT).count()
        sends = kit.sends_by_chat(chips, "Olá")
        assert sent == RECIPIENTS and len(sends) == RECIPIENTS and set(sends.values()) == {1}
        campaign_rate = RECIPIENTS / elapsed
        print(f"\nraw sendText loop: {raw_rate:.0f}/s ({RAW_SENDS} sends, half before and half after)")
        print(f"campaign: {RECIPIENTS} recipients through {CHIPS} chips in {elapsed:.1f} s = {campaign_rate:.0f}/s "
              f"(of which {started_in:.1f} s to start it: recipients listed, lanes launched)")
        print("CPU seconds during the campaign: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(campaign_cpu.items())))
        print(f"PostgreSQL CPU per recipient: {campaign_cpu.get('postgres', 0.0) / RECIPIENTS * 1000:.2f} ms; "
              f"workers' CPU per recipient: {campaign_cpu.get('celery', 0.0) / RECIPIENTS * 1000:.2f} ms")
        print(f"campaign ratio: {campaign_rate / raw_rate:.2f}")
    finally:
        for worker in workers:
            worker.stop()
        kit.stop()
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
