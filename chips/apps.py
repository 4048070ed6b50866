from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ChipsConfig(AppConfig):
    name = "chips"
    verbose_name = _("Chips and messages")
