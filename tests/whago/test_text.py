"""whago.text: text from outside cleaned of NUL, other C0 controls and lone surrogates (issue 17, finding 4)."""
import json

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from chips.models import Chip, Contact
from tests.chips.conftest import placed_chip, set_plan
from whago.text import clean_data, clean_text


@pytest.mark.parametrize("raw, clean", [
    ("Ana\x00 Maria", "Ana Maria"),
    ("a\x01b\x08c\x0bd\x0ce\x1bf\x1fg", "abcdefg"),
    ("tab\tnew\nline\r\n", "tab\tnew\nline\r\n"),  # kept
    ("lone \ud800 half", "lone \ufffd half"),
    ("low \udc00 half", "low \ufffd half"),
    ("pair \ud83d\ude00 joined", "pair \U0001F600 joined"),
    ("olá, café ✓ \U0001F600", "olá, café ✓ \U0001F600"),  # unchanged
    ("", ""),
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean
    clean_text(raw).encode("utf-8")  # always encodable


def test_clean_data_cleans_every_string_keys_too():
    parsed = json.loads('{"a\\u0000": ["x\\u0000y", {"b": "\\ud800"}], "n": 1, "t": true, "z": null}')
    assert clean_data(parsed) == {"a": ["xy", {"b": "\ufffd"}], "n": 1, "t": True, "z": None}


@pytest.mark.django_db
def test_portal_contact_form_with_nul_saves_clean_text(owner_client):
    # (A browser cannot send a lone surrogate in a form: the body is UTF-8 bytes, decoded with replacement.)
    response = owner_client.post(reverse("contact_create"), {
        "name": "Ana\x00 Maria\x1b", "phone": "(11) 98765-4321", "fields_text": "cidade=Cam\x00pinas",
    })
    assert response.status_code == 302
    with scopes_disabled():
        contact = Contact.objects.get(tenant=owner_client.tenant)
    assert contact.name == "Ana Maria" and contact.fields == {"cidade": "Campinas"}


@pytest.mark.django_db
def test_api_json_with_nul_and_lone_surrogate_is_cleaned_not_500(make_owner, api):
    _, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    chip = placed_chip(tenant)
    body = '{"alias": "Ven\\u0000das \\ud800"}'  # as JSON allows it; Python's json.loads keeps both
    response = api(tenant).patch(f"/api/v1/chips/{chip.pk}/", data=body, content_type="application/json")
    assert response.status_code == 200, response.content
    with scopes_disabled():
        assert Chip.objects.get(pk=chip.pk).alias == "Vendas \ufffd"
