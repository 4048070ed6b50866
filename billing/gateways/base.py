"""The one interface every payment gateway implements (one class per provider).

Failures are handled here, once, for every gateway: each interface method of a subclass is wrapped so
that what the provider's HTTP client or SDK raises becomes a GatewayError — GatewayUnavailable when the
provider could not be reached (network error, timeout, its 5xx or 429: try again later), otherwise a
refusal. str() of either is a plain message for the buyer; .detail keeps the technical text for operators.
"""
import base64
import functools
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import qrcode
import requests
from django.http import HttpRequest

from ..failures import FailureCode, failure_message


class GatewayError(Exception):
    """A call to the provider failed or was refused. str() is safe to show; .detail is for operators."""

    code = FailureCode.REFUSED

    def __init__(self, label: str, detail: str = ""):
        self.label = label
        self.detail = detail or self.code
        super().__init__(failure_message(self.code, label))


class GatewayUnavailable(GatewayError):
    """The provider could not be reached or failed on its side; nothing was decided: try again later."""

    code = FailureCode.UNAVAILABLE


class WebhookRejected(Exception):
    """A webhook whose signature, timestamp or shape is not acceptable: answer 400, apply nothing."""


def json_object(body: bytes, gateway: str) -> dict:
    """A webhook body that must be one JSON object; anything else is rejected."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookRejected(f"{gateway}: body is not JSON")
    if not isinstance(payload, dict):
        raise WebhookRejected(f"{gateway}: body is not a JSON object")
    return payload


def member(mapping: dict, key: str) -> dict:
    """mapping[key] when it is an object; {} when absent; a signed body of another shape is rejected."""
    value = mapping.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebhookRejected(f"{key} is not a JSON object")
    return value


def qr_png_base64(text: str) -> str:
    """A QR code of text as a base64 PNG: the PIX image when a provider sends only the copy-and-paste code."""
    buffer = io.BytesIO()
    qrcode.make(text).save(buffer)
    return base64.b64encode(buffer.getvalue()).decode()


@dataclass
class CheckoutResult:
    """What the gateway created: its id, where to send the buyer, or a PIX code to show."""

    external_id: str
    redirect_url: str = ""
    external_payment_id: str = ""
    pix_qr_code: str = ""
    pix_qr_code_base64: str = ""


@dataclass
class PaymentConfirmation:
    """Money movement as the provider reports it; checked against our own Payment."""

    status: str  # one of Payment.Status values: paid, pending, failed, canceled, refunded
    amount: Decimal
    currency: str
    external_payment_id: str = ""
    subscription_id: str = ""
    customer_id: str = ""
    period_end: datetime | None = None


# What a verified webhook asks us to do.
PAYMENT = "payment"  # a one-off payment or the first payment of a subscription changed state
RENEWAL = "renewal"  # a recurring payment of an existing subscription succeeded
SUBSCRIPTION_PAST_DUE = "subscription_past_due"
SUBSCRIPTION_CANCELED = "subscription_canceled"
IGNORE = "ignore"


@dataclass
class WebhookEvent:
    """A verified, parsed webhook."""

    event_id: str
    event_type: str
    payload: dict
    action: str = IGNORE
    # How to find OUR record: a checkout id we stored, our payment reference, or a subscription id.
    external_id: str = ""
    reference: str = ""
    subscription_id: str = ""
    confirmation: PaymentConfirmation | None = None
    extra: dict = field(default_factory=dict)



# The interface methods that talk to the provider: guarded in every subclass (see _guarded).
GUARDED = ("create_checkout", "parse_webhook", "fetch_payment", "confirm_return", "cancel_subscription")


def _guarded(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (GatewayError, WebhookRejected):
            raise
        except self.provider_errors as exc:
            detail = f"{type(exc).__name__}: {exc}"
            if self.is_unavailable(exc):
                raise self.unavailable(detail) from exc
            raise self.refused(detail) from exc

    return call


class PaymentGateway:
    """Base class: a provider that takes payments for plans and message credits."""

    code: str = ""
    label: str = ""
    supports_pix: bool = False
    is_test: bool = False
    # What the provider's HTTP client and SDK raise; turned into GatewayError by _guarded.
    provider_errors: tuple[type[Exception], ...] = (requests.RequestException,)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in GUARDED:
            if name in cls.__dict__:
                setattr(cls, name, _guarded(cls.__dict__[name]))

    def is_unavailable(self, exc: Exception) -> bool:
        """Whether a provider error means "not reachable now" (retry later) rather than a refusal."""
        return isinstance(exc, requests.RequestException)

    def unavailable(self, detail: str) -> GatewayUnavailable:
        return GatewayUnavailable(self.label, detail)

    def refused(self, detail: str) -> GatewayError:
        return GatewayError(self.label, detail)

    def refusal_for_status(self, status: int, detail: str) -> GatewayError:
        """An HTTP answer that is not a success: the provider's own failure (5xx, 429) or a refusal."""
        if status >= 500 or status in (0, 429):
            return self.unavailable(detail)
        return self.refused(detail)

    @classmethod
    def is_configured(cls) -> bool:
        """Whether the credentials this gateway needs are set."""
        raise NotImplementedError

    def create_checkout(self, payment, *, success_url: str, cancel_url: str, notification_url: str,
                        method: str = "") -> CheckoutResult:
        """Create a checkout at the provider for a pending Payment (a plan month or credits)."""
        raise NotImplementedError

    def parse_webhook(self, request: HttpRequest) -> WebhookEvent:
        """Verify a webhook's authenticity and freshness and parse it; raise WebhookRejected.

        The event id (de-duplication key) must come from data the provider signed."""
        raise NotImplementedError

    def fetch_payment(self, external_payment_id: str) -> PaymentConfirmation:
        """Ask the provider for a payment's current state."""
        raise NotImplementedError

    def confirm_return(self, payment, params: dict) -> PaymentConfirmation | None:
        """When the buyer comes back from the provider: confirm with the provider, if it can tell."""
        return None

    def cancel_subscription(self, subscription_id: str) -> None:
        """Stop a recurring subscription at the provider."""
        raise NotImplementedError
