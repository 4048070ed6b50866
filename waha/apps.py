from django.apps import AppConfig
from django.utils.functional import lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class WahaConfig(AppConfig):
    name = "waha"
    verbose_name = _("WhatsApp servers (WAHA)")

    def ready(self) -> None:
        from whago import audit

        from . import ops, receivers  # noqa: F401 - tenant suspension and reactivation

        # The console's container actions in the audit log, by their buttons' names.
        audit.name_actions({f"container.{code}": lazy(_container_action, str)(action.label)
                            for code, action in ops.ACTIONS.items()})


def _container_action(label) -> str:
    return gettext("Container: %(action)s") % {"action": label}
