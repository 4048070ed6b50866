"""Which WAHA the simulator imitates (`--profile`, env WAHA_SIM_PROFILE).

- `plus` (default): WAHA Plus as the simulator always behaved: many sessions, API key enforced,
  webhooks signed (X-Webhook-Hmac, SHA-512), retried, with an event id; sessions and their
  configs persist in the data dir. Version 2026.6.1 (tier PLUS), or 2024.10.8 with `--engine core`
  (the older, partial Core imitation: only `default`, media Plus-only).
- `core-2024.10`: real WAHA Core 2024.10.8 as observed (../shared/waha-core, src/core/manager.core.ts,
  webhooks.core.ts): one pre-existing `default` session, key never enforced, unsigned webhooks
  with no id and no retries, config forgotten on restart, 3 s per stop, 5 s status waits, a
  session whose loopback proxy refuses connections stays STARTING.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """What differs between the imitated WAHA releases."""

    name: str
    key_enforced: bool
    signed_webhooks: bool  # hmac, custom headers, X-Webhook-Request-Id/Timestamp
    webhook_retries: bool
    event_ids: bool  # "id" and "timestamp" in every webhook body
    status_history: bool  # session.status payload carries the last "statuses"
    probe_proxy: bool  # a session whose (loopback) proxy refuses connections stays STARTING
    stop_seconds: float  # what a stop of a running session takes
    status_wait_seconds: float  # how long a call waits for the status it needs


PROFILES = {
    "plus": Profile("plus", key_enforced=True, signed_webhooks=True, webhook_retries=True, event_ids=True,
                    status_history=True, probe_proxy=False, stop_seconds=0.0, status_wait_seconds=1.0),
    "core-2024.10": Profile("core-2024.10", key_enforced=False, signed_webhooks=False, webhook_retries=False,
                            event_ids=False, status_history=False, probe_proxy=True, stop_seconds=3.0,
                            status_wait_seconds=5.0),
}
