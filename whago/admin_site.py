"""The operators' console: the Django admin, outside any tenant scope, staff only."""
from functools import wraps

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django_scopes import scopes_disabled


class WhagoAdminSite(admin.AdminSite):
    site_header = _("WHAGO operations")
    site_title = _("WHAGO operations")
    index_title = _("Platform")

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
