"""The one interface every payment gateway implements (one class per provider)."""
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.http import HttpRequest


class GatewayError(Exception):
    """A call to the provider failed; the message is safe to show to the user."""


class WebhookRejected(Exception):
    """A webhook whose signature, timestamp or shape is not acceptable: answer 400, apply nothing."""


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


class PaymentGateway:
    """Base class: a provider that takes payments for plans and message credits."""

    code: str = ""
    label: str = ""
    supports_pix: bool = False
    is_test: bool = False

    @classmethod
    def is_configured(cls) -> bool:
        """Whether the credentials this gateway needs are set."""
        raise NotImplementedError

    def create_checkout(self, payment, *, success_url: str, cancel_url: str, notification_url: str,
                        method: str = "") -> CheckoutResult:
        """Create a checkout at the provider for a pending Payment (a plan month or credits)."""
        raise NotImplementedError

    def parse_webhook(self, request: HttpRequest) -> WebhookEvent:
        """Verify a webhook's authenticity and freshness and parse it; raise WebhookRejected."""
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
