"""The operators' console (Django admin) in pt-BR: third-party apps (django-axes, django-celery-beat,
django-otp) and Django's own texts translated by our catalogue, audit actions and WAHA statuses in words,
friendly units and local times."""
import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.utils import timezone
from django_scopes import scopes_disabled

from tests.chips.browserkit import english_msgids
from tests.ops.conftest import pass_second_factor
from tests.ops.rows import make
from waha.models import ContainerStatus, StatsSample, WahaContainer
from whago import audit
from whago.audit import action_label
from whago.models import Membership, Role, User

pytestmark = pytest.mark.django_db

# English the console used to show in pt-BR (issue 18), besides the catalogue's own msgids.
DENYLIST = ["Access attempt", "Access failure", "Access log", "Periodic task", "PERIODIC TASKS", "Intervals",
            "Crontabs", "Clocked", "Solar event", "TOTP device", "Otp_Totp", "Axes", "Groups", "(owner)",
            "container.list_sessions", "WORKING", "empresas selecionados", "0 minuto", "Attempt Time",
            "IP Address", "User Agent", "Start Datetime", "Last Run Datetime", "One-off Task", "Scheduler",
            "Enable selected tasks", "Run selected tasks", "Created at", "Last used at", "Search by user",
            "Tenant", "TENANT", "Container", "Waha session", "Proxy assignment", "Sort order", "Created by",
            "Reservation", "Task Name", "seconds", "minutes", "Can add", "Can change", "Can delete", "Can view"]


def shown_text(html: str) -> str:
    """The page's text as read on screen (no scripts, styles or tags)."""
    html = re.sub(r"(?s)<(script|style)\b[^>]*>.*?</\1>", " ", html)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def english_in(text: str, catalogue: list[str]) -> list[str]:
    """The denylist's and the catalogue's English found as whole words ("30 minutos" has no "0 minuto")."""
    return [text_ for text_ in DENYLIST + catalogue
            if re.search(r"(?<![\w-])" + re.escape(text_) + r"(?![\w-])", text)]


@pytest.fixture
def console(client, make_owner):
    """An operator past the second factor, and one row in every table the console lists."""
    operator = User.objects.create_superuser(email="console@whago.test", password=None)
    client.force_login(operator)
    pass_second_factor(client, operator)
    rows = {model: make(model) for model in admin.site._registry if model is not User}
    container = rows[WahaContainer]
    with scopes_disabled():
        WahaContainer.objects.filter(pk=container.pk).update(
            status=ContainerStatus.RUNNING, started_at=timezone.now() - timedelta(seconds=20),
            last_memory_bytes=734_003_200, last_memory_percent=74.0, last_cpu_percent=12.5)
    audit.record("container.list_sessions", actor=operator, target=container,
                 status=audit.AuditLog.Status.SUCCEEDED, result="1 sessão: default (Funcionando)")
    _user, tenant = make_owner(company="Padaria Pão Quente")
    return client, rows, tenant


def test_the_console_index_and_every_list_speak_portuguese(console):
    client, rows, _tenant = console
    catalogue = english_msgids()
    problems = {}
    pages = ["/admin/"] + [f"/admin/{model._meta.app_label}/{model._meta.model_name}/" for model in rows]
    for url in pages:
        response = client.get(url, HTTP_ACCEPT_LANGUAGE="pt-br")
        assert response.status_code == 200, url
        found = english_in(shown_text(response.content.decode()), catalogue)
        if found:
            problems[url] = found
    assert not problems, problems
    for model, row in rows.items():  # titles and fields in local time, never a raw UTC timestamp
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/{row.pk}/change/"
        utc = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d(?::[\d.]+)?\+00:00", shown_text(client.get(url).content.decode()))
        if utc:
            problems[url] = utc
    assert not problems, problems
    index = shown_text(client.get("/admin/").content.decode())
    for name in ("Tentativas de login", "Tentativas de acesso", "Tarefas periódicas", "Segundo fator",
                 "Autenticadores", "Intervalos"):
        assert name in index, name


def test_every_change_form_speaks_portuguese(console):
    """Group and user forms included: their permission choices are named in pt-BR, not with the English
    names Django stores ("Can add tenant")."""
    client, rows, _tenant = console
    catalogue = english_msgids()
    problems = {}
    for model, row in rows.items():
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/{row.pk}/change/"
        found = english_in(shown_text(client.get(url).content.decode()), catalogue)
        if found:
            problems[url] = found
    assert not problems, problems


def test_the_console_names_actions_statuses_units_and_times_for_people(console):
    client, rows, tenant = console
    log = shown_text(client.get("/admin/whago/auditlog/").content.decode())
    assert "Contêiner: Listar sessões" in log and "container.list_sessions" not in log
    containers = shown_text(client.get("/admin/waha/wahacontainer/").content.decode())
    assert "menos de um minuto" in containers and "12,5 %" in containers and "700,0 MB (74 %)" in containers
    assert "Excluir os itens selecionados (empresas)" in client.get("/admin/whago/tenant/").content.decode()
    page = shown_text(client.get(f"/admin/waha/wahacontainer/{rows[WahaContainer].pk}/change/").content.decode())
    assert "700,0 MB" in page and "734003200" not in page
    with scopes_disabled():
        membership = Membership.objects.get(tenant=tenant, role=Role.OWNER)
        sample = StatsSample.objects.get(pk=rows[StatsSample].pk)
    assert str(membership).endswith("(Proprietário)")
    assert str(sample).endswith(timezone.localtime(sample.taken_at).strftime("%d/%m/%Y %H:%M"))


def test_audit_actions_have_names_and_unknown_codes_stay_as_they_are():
    assert action_label("container.restart") == "Contêiner: Reiniciar"
    assert action_label("tenant.suspend") == "Empresa suspensa"
    assert action_label("something.new") == "something.new"
