"""One way to render forms in the whole portal (whago.renderers): each error inside its own field's
block, right under its input; errors of no field on top. Pages checked as rendered HTML."""
from pathlib import Path

import pytest
from django.test.html import parse_html
from django.urls import reverse
from django_scopes import scopes_disabled

from chips.models import Chip
from tests.chips.conftest import placed_chip
from tests.conftest import STRONG_PASSWORD
from whago.models import Tenant, User

pytestmark = pytest.mark.django_db
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def walk(node):
    yield node
    for child in getattr(node, "children", []):
        if not isinstance(child, str):
            yield from walk(child)


def text(node) -> str:
    return "".join(child if isinstance(child, str) else text(child) for child in node.children)


def attr(node, name: str) -> str | None:
    return dict(node.attributes).get(name)


def field_blocks(html: str) -> dict[str, str]:
    """The text of each field's block (data-field) of the page's forms."""
    return {attr(node, "data-field"): text(node) for node in walk(parse_html(html)) if attr(node, "data-field")}


def errors_of(html: str, field: str) -> str:
    blocks = [node for node in walk(parse_html(html)) if attr(node, "data-field") == field]
    assert blocks, f"no block for the field {field}"
    return " ".join(text(node) for block in blocks for node in walk(block)
                    if "errorlist" in (attr(node, "class") or ""))


def test_signup_errors_sit_under_their_own_fields(client, make_owner):
    make_owner(email="existe@example.com.br")
    data = {"full_name": "Maria Souza", "company": "P" * 121, "email": "EXISTE@example.com.br",
            "password1": STRONG_PASSWORD, "password2": STRONG_PASSWORD}
    response = client.post(reverse("signup"), data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "121" in errors_of(html, "company") and "120" in errors_of(html, "company")
    assert "Já existe uma conta com este e-mail" in errors_of(html, "email")
    assert errors_of(html, "full_name") == ""  # the field above the company's gets no one else's error
    assert field_blocks(html)["company"].index("Nome da empresa") < field_blocks(html)["company"].index("121")
    assert not Tenant.objects.filter(name__startswith="PPP").exists()


def test_errors_of_no_field_come_first_in_one_alert(owner_client):
    chip = placed_chip(owner_client.tenant)
    from chips import contacts

    group = contacts.create_list(owner_client.tenant, "G")
    form = {"name": "X", "template": "Oi {apelido}", "lists": [group.pk], "chips": [chip.pk], "window_days": ["0"],
            "window_start": "09:00", "window_end": "18:00", "pace_per_minute": "10"}
    html = owner_client.post(reverse("campaign_create"), form).content.decode()
    top = html.index('class="form-errors"')
    assert top < html.index('data-field="name"') and "{apelido}" in html[top:html.index('data-field="name"')]


def test_renaming_a_chip_with_a_too_long_name_says_so_under_the_name(owner_client):
    chip = placed_chip(owner_client.tenant)
    response = owner_client.post(reverse("chip_rename", args=[chip.pk]), {"alias": "x" * 300})
    assert response.status_code == 400
    error = errors_of(response.content.decode(), "alias")
    assert "80" in error and "300" in error
    with scopes_disabled():
        assert Chip.objects.get(pk=chip.pk).alias == "Vendas"
    assert owner_client.post(reverse("chip_rename", args=[chip.pk]), {"alias": "Loja"}).status_code == 302


def test_invitation_errors_stay_on_the_settings_page_next_to_the_field(owner_client):
    response = owner_client.post(reverse("invite"), {"email": "nao-e-email", "role": "member"})
    assert response.status_code == 400
    assert "Insira um endereço de email válido" in errors_of(response.content.decode(), "email")
    taken = owner_client.post(reverse("invite"), {"email": owner_client.user.email, "role": "member"})
    assert "já é membro" in errors_of(taken.content.decode(), "email")


def test_the_login_error_does_not_claim_e_mails_are_case_sensitive(client, make_owner):
    user, _tenant = make_owner()
    wrong = client.post(reverse("login"), {"username": user.email, "password": "errada"}).content.decode()
    assert "Senha ou e-mail incorretos" in wrong and "diferenciam" not in wrong
    right = client.post(reverse("login"), {"username": user.email.upper(), "password": STRONG_PASSWORD})
    assert right.status_code == 302 and int(client.session["_auth_user_id"]) == user.pk
    assert User.objects.filter(email=user.email).count() == 1


def test_no_portal_template_renders_a_form_another_way():
    others = [str(path.relative_to(TEMPLATES)) for path in TEMPLATES.rglob("*.html")
              if not path.is_relative_to(TEMPLATES / "admin")
              and any(f".{way}" in path.read_text() for way in ("as_p", "as_table", "as_ul", "as_div"))]
    assert others == []
