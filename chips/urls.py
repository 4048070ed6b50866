from django.urls import path

from . import views

urlpatterns = [
    path("chips/", views.upcoming, {"section": "chips"}, name="chip_list"),
    path("mensagens/", views.upcoming, {"section": "messages"}, name="message_list"),
    path("campanhas/", views.upcoming, {"section": "campaigns"}, name="campaign_list"),
    path("api-keys/webhook/", views.webhook_settings, name="webhook_settings"),
    path("api-keys/webhook/teste/", views.webhook_test, name="webhook_test"),
    path("api-keys/webhook/novo-segredo/", views.webhook_rotate, name="webhook_rotate"),
]
