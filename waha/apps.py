from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WahaConfig(AppConfig):
    name = "waha"
    verbose_name = _("WAHA containers")
