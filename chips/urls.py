from django.urls import path

from . import views

urlpatterns = [
    path("chips/", views.chip_list, name="chip_list"),
    path("chips/novo/", views.chip_create, name="chip_create"),
    path("chips/<int:pk>/", views.chip_detail, name="chip_detail"),
    path("chips/<int:pk>/status/", views.chip_status, name="chip_status"),
    path("chips/<int:pk>/qr.png", views.chip_qr, name="chip_qr"),
    path("chips/<int:pk>/codigo/", views.chip_pairing_code, name="chip_pairing_code"),
    path("chips/<int:pk>/conectar/", views.chip_connect, name="chip_connect"),
    path("chips/<int:pk>/reiniciar/", views.chip_restart, name="chip_restart"),
    path("chips/<int:pk>/desconectar/", views.chip_disconnect, name="chip_disconnect"),
    path("chips/<int:pk>/renomear/", views.chip_rename, name="chip_rename"),
    path("chips/<int:pk>/excluir/", views.chip_delete, name="chip_delete"),
    path("chips/<int:pk>/conversas/", views.chip_inbox, name="chip_inbox"),
    path("chips/<int:pk>/conversas/<str:peer>/", views.conversation, name="conversation"),
    path("mensagens/", views.message_list, name="message_list"),
    path("mensagens/enviar/", views.message_send, name="message_send"),
    path("mensagens/<int:pk>/", views.message_detail, name="message_detail"),
    path("mensagens/<int:pk>/arquivo/", views.message_media, name="message_media"),
    path("campanhas/", views.upcoming, {"section": "campaigns"}, name="campaign_list"),
    path("api-keys/webhook/", views.webhook_settings, name="webhook_settings"),
    path("api-keys/webhook/teste/", views.webhook_test, name="webhook_test"),
    path("api-keys/webhook/novo-segredo/", views.webhook_rotate, name="webhook_rotate"),
]
