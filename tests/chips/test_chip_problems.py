"""A chip's problem is recorded as a code and read in the viewer's language (issue 16: the worker
wrote it in its own language, so a tenant who chose English read Portuguese)."""
import pytest
from django.urls import reverse
from django.utils import translation
from django_scopes import scope, scopes_disabled

from chips import lifecycle
from chips.models import Chip
from tests.chips.conftest import set_plan
from waha.runtime import RuntimeFailure

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_chip(make_owner):
    user, tenant = make_owner(confirmed=True)
    with scopes_disabled():
        chip = Chip.objects.create(tenant=tenant, alias="Vendas", status=Chip.Status.PROVISIONING)
    with translation.override("pt-br"), scope(tenant=tenant):  # the worker's language, the task's scope
        lifecycle.provision_problem(chip.pk, RuntimeFailure("engine unreachable"), final=True)
    with scopes_disabled():
        chip.refresh_from_db()
    return user, chip


def live_part(client, chip, language: str) -> str:
    client.post(reverse("set_language"), {"language": language, "next": "/"})
    return client.get(reverse("chip_detail", args=[chip.pk])).content.decode()


def test_a_failure_reads_in_each_viewers_language(client, failed_chip):
    user, chip = failed_chip
    assert chip.status == Chip.Status.FAILED and chip.problem == Chip.Problem.PROVISION_ERROR
    assert "engine unreachable" in chip.problem_detail
    client.force_login(user)
    english = live_part(client, chip, "en")
    assert "The WhatsApp server could not be prepared: engine unreachable" in english
    assert "não pôde ser preparado" not in english
    portuguese = live_part(client, chip, "pt-br")
    assert "engine unreachable" in portuguese and "could not be prepared" not in portuguese


def test_the_api_says_it_in_the_requests_language(api, failed_chip):
    _user, chip = failed_chip
    set_plan(chip.tenant, "BUSINESS")  # a plan with the API
    client = api(chip.tenant)
    english = client.get(f"/api/v1/chips/{chip.pk}/", HTTP_ACCEPT_LANGUAGE="en").json()
    assert english["last_error"] == "The WhatsApp server could not be prepared: engine unreachable"
    portuguese = client.get(f"/api/v1/chips/{chip.pk}/", HTTP_ACCEPT_LANGUAGE="pt-br").json()
    assert portuguese["last_error"].endswith("engine unreachable") and "could not" not in portuguese["last_error"]


def test_connecting_again_clears_the_problem(failed_chip):
    _user, chip = failed_chip
    with scopes_disabled():
        lifecycle._set_status(chip, Chip.Status.PROVISIONING, last_error="")
        chip.refresh_from_db()
    assert (chip.problem, chip.problem_detail, chip.error_text) == ("", "", "")
