"""Helpers that keep admin lists fast on big tables (millions of messages, events, samples)."""
import json

from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ADMIN_EXACT_COUNT_LIMIT rows; above that, uses the database's estimate.

    An exact COUNT(*) over millions of rows costs more than the page itself. The capped count
    reads at most the limit's worth of rows; past it, PostgreSQL's planner estimate (from the
    table statistics) sizes the pagination, and `estimated` tells the template to say "about".
    """

    estimated = False

    @cached_property
    def count(self) -> int:
        limit = settings.ADMIN_EXACT_COUNT_LIMIT
        queryset = self.object_list
        if not isinstance(queryset, QuerySet) or limit <= 0:
            return super().count
        capped = queryset.order_by()[: limit + 1].count()
        if capped <= limit:
            return capped
        self.estimated = True
        return max(limit + 1, self._planner_estimate(queryset))

    @staticmethod
    def _planner_estimate(queryset: QuerySet) -> int:
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return 0
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str | bytes):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])


class FastCheckboxMixin:
    """The row checkbox of admin actions written directly, not through the form widget templates.

    Same markup as Django's (name, value, class, label); rendering a widget template per
    row was a third of a 100-row list's time.
    """

    def action_checkbox(self, obj):
        label = format_html(_("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME, str(obj.pk), label,
        )


class ConsoleAdmin(FastCheckboxMixin, admin.ModelAdmin):
    """The console's lists: a page of rows an operator reads, no full count beside a filtered one."""

    list_per_page = 25
    show_full_result_count = False


class BigTableAdmin(ConsoleAdmin):
    """A ConsoleAdmin for tables that grow without bound: estimated pagination, no facet counts."""

    paginator = EstimatedCountPaginator
    show_facets = admin.ShowFacets.NEVER  # facet counts are one COUNT per filter choice


def status_dot(label, tone: str, title: str = "") -> str:
    """A coloured "● label" for admin lists; the colour comes from a class of ops/console.css
    (good, busy, warn, bad, idle): the Content-Security-Policy allows no style= attribute."""
    if title:
        return format_html('<span class="ops-dot ops-{}" title="{}">● {}</span>', tone, title, label)
    return format_html('<span class="ops-dot ops-{}">● {}</span>', tone, label)


class PermissionChoiceField(forms.ModelMultipleChoiceField):
    """Permissions named in the operator's language.

    Django stores a model's default permissions with English names ("Can add tenant"); the
    choice reads "Empresas | Empresa | Pode adicionar" instead, from the model's translated
    names. Permissions a model declares itself are named by the catalogue, as their msgid.
    """

    ACTIONS = {
        "add": gettext_lazy("Can add"),
        "change": gettext_lazy("Can change"),
        "delete": gettext_lazy("Can delete"),
        "view": gettext_lazy("Can view"),
    }

    def label_from_instance(self, permission) -> str:
        model = permission.content_type.model_class()
        if model is None:
            return str(permission)
        action, _sep, model_name = permission.codename.partition("_")
        name = self.ACTIONS.get(action) if model_name == model._meta.model_name else None
        app = apps.get_app_config(model._meta.app_label).verbose_name
        # A model's own permissions are named with a msgid of our catalogue (Meta.permissions).
        return f"{app} | {model._meta.verbose_name} | {name or _(permission.name)}"


class TranslatedPermissionsMixin:
    """Use PermissionChoiceField for a user's or a group's permissions."""

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name in ("permissions", "user_permissions"):
            kwargs["form_class"] = PermissionChoiceField
        return super().formfield_for_manytomany(db_field, request, **kwargs)
