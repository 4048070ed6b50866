import subprocess
from pathlib import Path

import pytest
from django.urls import reverse

LOCALE = Path(__file__).resolve().parents[2] / "locale"
pytestmark = pytest.mark.django_db


def test_portuguese_is_the_default(client):
    page = client.get(reverse("landing")).content.decode()
    assert "Planos" in page
    assert 'lang="pt-br"' in page


def test_switching_to_english(client):
    response = client.post(reverse("set_language"), {"language": "en", "next": "/"})
    assert response.status_code == 302
    page = client.get(reverse("landing")).content.decode()
    assert 'lang="en"' in page
    assert "Plans" in page and "Planos" not in page


def test_the_landing_page_shows_the_three_plans(client):
    page = client.get(reverse("landing")).content.decode()
    for code, chips in [("FREE", "1 chip"), ("BUSINESS", "3 chips"), ("ENTERPRISE", "10 chips")]:
        assert f'data-plan="{code}"' in page
        assert chips in page


def _entries(po: Path):
    """(msgid, msgstr, flags) of each entry of a .po file, plural forms joined."""
    entries, current, flags, field = [], None, "", None
    for line in po.read_text().splitlines() + [""]:
        if line.startswith("#,"):
            flags = line
        elif line.startswith("msgid "):
            current, field = {"msgid": line[6:].strip('"'), "msgstr": ""}, "msgid"
        elif line.startswith("msgid_plural"):
            field = "msgid"
        elif line.startswith("msgstr"):
            field = "msgstr"
            current["msgstr"] += line.split(" ", 1)[1].strip('"') + "|"
        elif line.startswith('"') and current:
            current[field] += line.strip('"')
        elif not line.strip() and current:
            entries.append((current["msgid"], current["msgstr"].replace("|", ""), flags))
            current, flags = None, ""
    return [e for e in entries if e[0]]


def test_every_portuguese_string_is_translated():
    entries = _entries(LOCALE / "pt_BR" / "LC_MESSAGES" / "django.po")
    assert len(entries) > 50
    missing = [msgid for msgid, msgstr, _flags in entries if not msgstr]
    fuzzy = [msgid for msgid, _msgstr, flags in entries if "fuzzy" in flags]
    assert missing == [] and fuzzy == []


def test_compiled_catalogue_matches_the_po_file(tmp_path):
    po = LOCALE / "pt_BR" / "LC_MESSAGES" / "django.po"
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check-format", "-o", str(fresh), str(po)], check=True)
    assert fresh.read_bytes() == po.with_suffix(".mo").read_bytes()
