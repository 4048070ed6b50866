from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WahaConfig(AppConfig):
    name = "waha"
    verbose_name = _("WhatsApp servers (WAHA)")

    def ready(self) -> None:
        from . import receivers  # noqa: F401 - tenant suspension and reactivation
