from django.urls import path

from . import views

urlpatterns = [
    path("precos/", views.pricing, name="pricing"),
    path("cobranca/", views.billing_home, name="billing"),
]
