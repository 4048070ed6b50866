"""Why a payment failed, as the buyer reads it: plain, translated, never the provider's technical text.

The technical detail (exception text, the provider's answer) is kept apart for operators: in the log
and in Payment.failure_reason, shown only in the operators' console.
"""
from django.db import models
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy


class FailureCode(models.TextChoices):
    UNAVAILABLE = "unavailable", gettext_lazy("Gateway unreachable")
    REFUSED = "refused", gettext_lazy("Refused by the gateway")
    DECLINED = "declined", gettext_lazy("Declined")
    CANCELED = "canceled", gettext_lazy("Canceled or expired")


def failure_message(code: str, gateway: str) -> str:
    """The buyer's message for a failure code; gateway is the provider's name (Mercado Pago, Stripe...)."""
    if code == FailureCode.UNAVAILABLE:
        return _("Could not reach %(gateway)s right now. Please try again in a few minutes.") % {"gateway": gateway}
    if code == FailureCode.DECLINED:
        return _("The payment was declined. Please try again, or choose another payment method.")
    if code == FailureCode.CANCELED:
        return _("The payment was canceled or expired before it was completed. Please try again.")
    return _("%(gateway)s did not accept the request. Please try again, or choose another payment method.") % {
        "gateway": gateway
    }
