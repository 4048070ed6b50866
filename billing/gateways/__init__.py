"""Payment gateways behind one interface (base.PaymentGateway), one module per provider."""
from .base import PaymentGateway
from .mercadopago import MercadoPagoGateway
from .paypal import PayPalGateway
from .sandbox import SandboxGateway
from .stripe import StripeGateway

GATEWAYS: dict[str, type[PaymentGateway]] = {
    cls.code: cls for cls in (StripeGateway, MercadoPagoGateway, PayPalGateway, SandboxGateway)
}


def get_gateway(code: str) -> PaymentGateway:
    """The gateway with this code; KeyError when unknown."""
    return GATEWAYS[code]()


def configured_gateways() -> list[PaymentGateway]:
    """The gateways whose credentials are set, in display order."""
    return [cls() for cls in GATEWAYS.values() if cls.is_configured()]
