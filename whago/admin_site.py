"""The operators' console: the Django admin, outside any tenant scope, staff only — and, with
ADMIN_REQUIRE_2FA, only after the code of the operator's authenticator app (django-otp's TOTP)."""
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import user_passes_test
from django.utils.translation import gettext_lazy as _
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_scopes import scopes_disabled


def second_factor_ok(user) -> bool:
    """Whether this user's session passed the second factor the console asks for (if it asks)."""
    return not settings.ADMIN_REQUIRE_2FA or bool(getattr(user, "is_verified", lambda: False)())


# Operator pages outside the admin (/status/): staff, past the second factor when it is asked for.
operator_required = user_passes_test(lambda user: user.is_active and user.is_staff and second_factor_ok(user),
                                     login_url="admin:login")


class OperatorLoginForm(OTPAdminAuthenticationForm):
    """The admin login: e-mail, password and the 6-digit code of the authenticator app.

    django-otp asks which device the code comes from; an operator has one authenticator (made by
    `manage.py operator_totp`), so it is taken without asking.
    """

    otp_error_messages = {
        **OTPAdminAuthenticationForm.otp_error_messages,
        "token_required": _("Enter the 6-digit code of your authenticator app."),
        "invalid_token": _("Wrong or expired code. Enter the code your authenticator app shows now."),
        "device_required": _("You have no authenticator yet: someone with access to the server runs "
                             "manage.py operator_totp with your e-mail."),
    }
    otp_token = forms.CharField(
        label=_("Authenticator code"), required=False, max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def _chosen_device(self, user):
        device = super()._chosen_device(user)
        if device is None:
            # Locked like django-otp's own choice, so concurrent guesses count against its throttle.
            device = TOTPDevice.objects.devices_for_user(user, confirmed=True).select_for_update().first()
        return device


class WhagoAdminSite(admin.AdminSite):
    site_header = _("WHAGO operations")
    site_title = _("WHAGO operations")
    index_title = _("Platform")

    @property
    def login_form(self):
        return OperatorLoginForm if settings.ADMIN_REQUIRE_2FA else None

    @property
    def login_template(self):
        return "admin/login_2fa.html" if settings.ADMIN_REQUIRE_2FA else None

    def has_permission(self, request) -> bool:
        return super().has_permission(request) and second_factor_ok(request.user)

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def unscoped(request, *args, **kwargs):
            # Operators see every tenant: the admin is the one place scopes are off.
            with scopes_disabled():
                response = inner(request, *args, **kwargs)
                # TemplateResponses render lazily, after this block: render them here,
                # where querysets in the template (inlines, related lists) may run.
                if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                    response.render()
                return response

        return unscoped
