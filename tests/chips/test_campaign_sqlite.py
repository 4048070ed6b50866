"""Campaigns on the embedded defaults (`make run`: SQLite, no Redis): a lane sends for real.

The dispatch writes some rows with its own SQL (the hot path); this runs that path on SQLite in a
subprocess against a simulator process, as `make run` would.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waha.simkit import SimulatorProcess

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys, uuid
from datetime import time as clock
from django.core.management import call_command
from django.utils import timezone
from django_scopes import scopes_disabled
call_command("migrate", verbosity=0)
from chips import campaigns, contacts, dispatch
from chips.models import CampaignRecipient, Chip, Contact, Message
from waha.models import WahaContainer, WahaSession
from whago import services as accounts

port, api_key, session = int(sys.argv[1]), sys.argv[2], sys.argv[3]
user, tenant = accounts.sign_up(email="lite@example.com.br", password="Lite-Campaign-2026!", full_name="Lite",
                                company="Lite")
with scopes_disabled():
    container = WahaContainer.objects.create(tenant=tenant, name="lite", runtime="local", port=port,
                                             api_key=api_key, status="running", healthy=True)
    chip = Chip.objects.create(tenant=tenant, alias="Lite", status="WORKING", session_name=session)
    chip.waha_session = WahaSession.objects.create(tenant=tenant, container=container, name=session,
                                                   remote_name=session, status="WORKING")
    chip.save()
    group = contacts.create_list(tenant, "Lite")
    for n in range(4):
        contact = Contact.objects.create(tenant=tenant, phone=f"+55119870000{n:02d}", name=f"Pessoa {n}",
                                         consent_source="form" if n else "", consent_at=timezone.now() if n else None)
        contact.lists.add(group)
campaign = campaigns.save_campaign(tenant, name="Lite", template="Oi {nome}", lists=[group], chips=[chip],
                                   window_days=list(range(7)), window_start=clock(0), window_end=clock(23, 59),
                                   pace_per_minute=20)
with scopes_disabled():
    campaign.status = "running"
    campaign.save()
    campaigns._materialize(campaign)
    dispatch.send_batch(campaign, chip, uuid.uuid4(), 10)
    print(json.dumps({
        "recipients": sorted(CampaignRecipient.objects.values_list("status", flat=True)),
        "messages": sorted(Message.objects.values_list("status", flat=True)),
        # Times written by the dispatch's own SQL are stored as the ORM stores them (found again by value).
        "times_comparable": all(
            Message.objects.filter(pk=m.pk, attempted_at=m.attempted_at, sent_at=m.sent_at).exists()
            for m in Message.objects.all()),
    }))
"""


@pytest.fixture
def simulator(tmp_path):
    process = SimulatorProcess(tmp_path / "sim").start()
    yield process
    process.stop()


def test_a_campaign_batch_is_sent_on_the_embedded_sqlite_database(tmp_path, simulator):
    simulator.create_working("chip_lite", "5511999990009")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_ENV", "WAHA_RUNTIME")}
    env.update(WHAGO_VAR_DIR=str(tmp_path), REDIS_URL="", CELERY_BROKER_URL="", WAHA_HOST="127.0.0.1",
               DJANGO_SETTINGS_MODULE="whago.settings", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); exec(open(0).read())",
         str(simulator.port), simulator.api_key, "chip_lite"],
        input=SCRIPT, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"recipients": ["sent", "sent", "sent", "skipped"], "messages": ["SENT", "SENT", "SENT"],
                       "times_comparable": True}
    sent = simulator.get("/_sim/stats").json()["sessions"]["chip_lite"]["sent"]
    assert sent == 3
