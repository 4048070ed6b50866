from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _

from billing.plans import seed_after_migrate


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = _("Billing")

    def ready(self):
        # The default plans exist after every migrate and flush (missing ones created, edits kept).
        post_migrate.connect(seed_after_migrate, sender=self, dispatch_uid="billing.seed_plans")
        from . import receivers  # noqa: F401 - whago.signals.tenant_created: the FREE plan at sign-up
