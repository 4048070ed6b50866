"""The console's pages, included at the root by whago.urls (before the admin's own URLs)."""
from django.contrib import admin
from django.urls import path

from . import dashboard, views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("admin/dashboard/", admin.site.admin_view(dashboard.dashboard), name="ops_dashboard"),
]
