from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ChipsConfig(AppConfig):
    name = "chips"
    verbose_name = _("Chips and messages")

    def ready(self) -> None:
        from . import receivers  # noqa: F401 - connects the signal receivers
