from django.urls import path

from . import views

urlpatterns = [
    path("precos/", views.pricing, name="pricing"),
    path("cobranca/", views.billing_home, name="billing"),
    path("cobranca/pagar/", views.checkout, name="billing_checkout"),
    path("cobranca/plano-gratuito/", views.downgrade, name="billing_downgrade"),
    path("cobranca/pagamentos/<uuid:reference>/", views.payment_detail, name="billing_payment"),
    path("cobranca/pagamentos/<uuid:reference>/retorno/", views.payment_return, name="billing_return"),
    path("cobranca/pagamentos/<uuid:reference>/verificar/", views.payment_check, name="billing_payment_check"),
    path("cobranca/pagamentos/<uuid:reference>/estado/", views.payment_status, name="billing_payment_status"),
    path("cobranca/pagamentos/<uuid:reference>/recibo/", views.receipt, name="billing_receipt"),
    path("cobranca/sandbox/<uuid:reference>/", views.sandbox_checkout, name="billing_sandbox_checkout"),
    path("api/v1/webhooks/billing/<slug:gateway>", views.webhook, name="billing_webhook"),
]
