from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """Listed after every app in INSTALLED_APPS: its admin replaces whago's tenant admin once all are loaded."""

    name = "whago.console"
    label = "console"
