"""Signals the waha app sends when a container posts a webhook (`chips` listens to them).

Every signal is sent inside the database transaction that stored the event (a receiver
that raises rolls the event back and WAHA retries it, so each event is applied once; a
receiver that raises RetryLater gets a 503 answered, the other errors a 500)
and inside `django_scopes.scope(tenant=tenant)`. Keyword arguments of all three:

- container: waha.models.WahaContainer that sent the event
- tenant: whago.models.Tenant owning the container
- session: str, WHAGO's session name (e.g. "chip_42"; on Core not WAHA's "default")
- waha_session: waha.models.WahaSession
- event: waha.models.WebhookEvent (the stored row; .payload is the whole body)
- event_id: str, WAHA's event id ("evt_...")
- payload: dict, the event's "payload" object
- me: dict | None, the account of the session ({"id": "5511...@c.us", "pushName": ...})

and in addition:

- session_status_changed: status (str: STOPPED, STARTING, SCAN_QR_CODE, WORKING, FAILED)
- message_received: message (dict, WAHA's WAMessage: id, from, to, body, hasMedia, timestamp...)
- message_ack: message_id (str, the id returned by send_* as id._serialized), ack (int:
  -1 ERROR, 0 PENDING, 1 SERVER, 2 DEVICE, 3 READ, 4 PLAYED), ack_name (str)
"""
from django.dispatch import Signal


class RetryLater(Exception):  # noqa: N818 (a request, not an error)
    """Raised by a receiver that cannot apply the event yet: the event is not stored and the
    webhook answers 503 with Retry-After, so WAHA delivers it again later."""


session_status_changed = Signal()
message_received = Signal()
message_ack = Signal()
