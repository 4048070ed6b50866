"""Every admin list costs the same number of queries with 3 rows or 25 (no query per row)."""
import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from .rows import make_many

pytestmark = pytest.mark.django_db

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


def render(client, model) -> tuple[int, object]:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(queries), response


def test_every_model_of_the_console_is_covered():
    labels = {model._meta.label for model in REGISTERED}
    assert {"waha.WahaContainer", "waha.WahaSession", "waha.ContainerAlert", "waha.StatsSample",
            "waha.WebhookEvent", "whago.Tenant", "whago.AuditLog", "chips.Chip", "chips.Message",
            "billing.Payment", "billing.Subscription"} <= labels


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_changelist_queries_do_not_grow_with_rows(ops_client, model):
    make_many(model, 3)
    few, response = render(ops_client, model)
    shown_few = len(response.context["cl"].result_list)

    make_many(model, 22)
    many, response = render(ops_client, model)
    shown_many = len(response.context["cl"].result_list)

    assert shown_many >= shown_few + 22 or shown_many == response.context["cl"].list_per_page
    assert many == few, f"{few} queries with {shown_few} rows, {many} with {shown_many}"
