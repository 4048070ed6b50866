from django.urls import path

from . import api

urlpatterns = [
    path("chips/", api.ChipList.as_view(), name="api_chip_list"),
    path("chips/<int:pk>/", api.ChipDetail.as_view(), name="api_chip_detail"),
    path("chips/<int:pk>/qr", api.ChipQr.as_view(), name="api_chip_qr"),
    path("chips/<int:pk>/qr.png", api.ChipQrPng.as_view(), name="api_chip_qr_png"),
    path("chips/<int:pk>/connect", api.ChipConnect.as_view(), name="api_chip_connect"),
    path("chips/<int:pk>/disconnect", api.ChipDisconnect.as_view(), name="api_chip_disconnect"),
    path("chips/<int:pk>/restart", api.ChipRestart.as_view(), name="api_chip_restart"),
    path("messages/", api.MessageList.as_view(), name="api_message_list"),
    path("messages/batch", api.MessageBatch.as_view(), name="api_message_batch"),
    path("messages/<int:pk>/", api.MessageDetail.as_view(), name="api_message_detail"),
]
