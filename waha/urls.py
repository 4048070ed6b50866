from django.urls import path

from . import webhooks

urlpatterns = [
    path("api/v1/webhooks/waha", webhooks.receive, name="waha_webhook"),
    path("api/v1/webhooks/waha/<int:container_id>", webhooks.receive, name="waha_webhook_container"),
    path("api/v1/webhooks/waha/<int:container_id>/<str:token>", webhooks.receive, name="waha_webhook_token"),
]
