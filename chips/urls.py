from django.urls import path

from . import views

urlpatterns = [
    path("chips/", views.upcoming, {"section": "chips"}, name="chip_list"),
    path("mensagens/", views.upcoming, {"section": "messages"}, name="message_list"),
    path("campanhas/", views.upcoming, {"section": "campaigns"}, name="campaign_list"),
]
