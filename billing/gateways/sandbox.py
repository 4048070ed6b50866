"""A local fake gateway for the embedded mode and demos: no money moves. Refused in production."""
import secrets

from django.conf import settings
from django.urls import reverse

from . import base


class SandboxGateway(base.PaymentGateway):
    code = "sandbox"
    label = "Sandbox"
    supports_pix = True
    is_test = True

    @classmethod
    def is_configured(cls) -> bool:
        return bool(settings.BILLING_SANDBOX_ENABLED) and not settings.PRODUCTION

    def create_checkout(self, payment, *, success_url, cancel_url, notification_url, method=""):
        result = base.CheckoutResult(
            external_id=f"sbx_{secrets.token_hex(12)}",
            redirect_url=reverse("billing_sandbox_checkout", args=[payment.reference]),
        )
        if method == "pix":
            # A clearly fake "copia e cola" code: shows the PIX screen without any bank behind it.
            result.pix_qr_code = f"SANDBOX-PIX-WHAGO-{payment.reference}-{payment.amount}"
            result.pix_qr_code_base64 = base.qr_png_base64(result.pix_qr_code)
        return result

    def parse_webhook(self, request):
        raise base.WebhookRejected("the sandbox gateway confirms payments on its local page, not by webhook")

    def fetch_payment(self, external_payment_id: str) -> base.PaymentConfirmation:
        raise self.refused("the sandbox gateway keeps no payments of its own")

    def cancel_subscription(self, subscription_id: str) -> None:
        return None
