from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.utils.translation import gettext_lazy as _


class WhagoConfig(AppConfig):
    default = True
    name = "whago"
    verbose_name = _("Accounts and tenants")

    def ready(self) -> None:
        from . import checks, schema  # noqa: F401  (deploy checks; the OpenAPI auth extension)


class WhagoAdminConfig(admin_apps.AdminConfig):
    """The Django admin with WHAGO's site, which runs outside tenant scopes."""

    default = False
    default_site = "whago.admin_site.WhagoAdminSite"

    def ready(self) -> None:
        super().ready()
        from .thirdparty_i18n import name_apps

        name_apps()
