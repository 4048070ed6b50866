"""Contact imports stop at their limits while reading, in bounded memory (issue 17, findings 3 and 4).

The attacks: a 0.5 MB XLSX of 3 million rows (it ran 30 s until the worker was killed) and a 10 MB
CSV of one-character rows (it grew the worker by 1 GB). Memory is measured with tracemalloc
around the import itself; the bound is generous (100 MB) next to what reading everything cost.
"""
import codecs
import io
import tracemalloc
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation
from django_scopes import scopes_disabled

from chips import contacts
from chips.models import Contact

pytestmark = pytest.mark.django_db

MEMORY_BOUND = 100 * 1024 * 1024
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TOO_MANY = "Too many rows: at most"


def xlsx_package(sheet_chunks, shared_strings=("telefone", "origem", "data_do_consentimento")) -> bytes:
    """A minimal .xlsx written directly as a zip; the sheet's XML comes in chunks (streamed, deflated)."""
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel_ns = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml", (
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/></Types>'))
        package.writestr("xl/workbook.xml", f'<?xml version="1.0"?><workbook {ns} {rel_ns}><sheets>'
                                            '<sheet name="Contatos" sheetId="1" r:id="rId1"/></sheets></workbook>')
        package.writestr("xl/_rels/workbook.xml.rels", (
            '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'worksheet" Target="worksheets/sheet1.xml"/></Relationships>'))
        items = "".join(f"<si><t>{text}</t></si>" for text in shared_strings)
        package.writestr("xl/sharedStrings.xml", f'<?xml version="1.0"?><sst {ns}>{items}</sst>')
        with package.open("xl/worksheets/sheet1.xml", "w") as sheet:
            sheet.write(f'<?xml version="1.0"?><worksheet {ns}><sheetData>'.encode())
            for chunk in sheet_chunks:
                sheet.write(chunk)
            sheet.write(b"</sheetData></worksheet>")
    return buffer.getvalue()


def header_row() -> bytes:
    return b'<row><c t="s"><v>0</v></c><c t="s"><v>1</v></c><c t="s"><v>2</v></c></row>'


def three_million_rows() -> bytes:
    """Header, then 3,000,000 rows of the same contact (a number, a source and a date)."""
    row = b'<row><c><v>11987654321</v></c><c t="inlineStr"><is><t>site</t></is></c><c t="inlineStr"><is><t>' \
          b'05/03/2025</t></is></c></row>'
    block = row * 10_000
    return xlsx_package([header_row(), *([block] * 300)])


def measured_import(tenant, name: str, content: bytes, content_type: str = "text/csv"):
    """import_contacts of an upload, with the peak of Python memory allocated meanwhile."""
    target = contacts.create_list(tenant, name)
    upload = SimpleUploadedFile(name, content, content_type)
    tracemalloc.start()
    try:
        with translation.override("en"):
            report = contacts.import_contacts(tenant, upload, target)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return report, peak


def test_a_3_million_row_xlsx_is_stopped_at_the_row_limit_in_bounded_memory(make_owner):
    _, tenant = make_owner()
    content = three_million_rows()
    assert len(content) < 2 * 1024 * 1024  # the attack: a small upload

    report, peak = measured_import(tenant, "bomba.xlsx", content, XLSX)

    assert report.error.startswith(TOO_MANY), report.error
    assert peak < MEMORY_BOUND, f"peak {peak / 1048576:.0f} MB"
    with scopes_disabled():
        assert not Contact.objects.filter(tenant=tenant).exists()


def test_a_10_mb_csv_of_one_character_rows_is_stopped_at_the_row_limit_in_bounded_memory(make_owner):
    _, tenant = make_owner()
    content = b"telefone\n" + b"1\n" * 4_999_990
    assert 9_900_000 < len(content) < 10_485_760

    report, peak = measured_import(tenant, "um.csv", content)

    assert report.error.startswith(TOO_MANY), report.error
    assert report.problems == []  # the refused file's row problems are not kept either
    assert peak < MEMORY_BOUND, f"peak {peak / 1048576:.0f} MB"


def test_rows_the_sheet_skips_count_as_lines_and_cannot_inflate_it(make_owner):
    """Row 1, then row 3,000,000: the gap is read as blank lines, and those are bounded too."""
    _, tenant = make_owner()
    content = xlsx_package([header_row().replace(b"<row>", b'<row r="1">'),
                            b'<row r="3000000"><c r="A3000000"><v>11987654321</v></c></row>'])
    report, peak = measured_import(tenant, "gap.xlsx", content, XLSX)
    assert report.error.startswith(TOO_MANY) and peak < MEMORY_BOUND


def test_a_row_of_a_million_cells_is_refused_in_bounded_memory(make_owner):
    _, tenant = make_owner()
    wide = b"<row>" + b"<c><v>1</v></c>" * 1_000_000 + b"</row>"
    content = xlsx_package([header_row(), wide])
    report, peak = measured_import(tenant, "larga.xlsx", content, XLSX)
    assert "too large" in report.error and peak < MEMORY_BOUND


def test_the_size_is_checked_before_reading(make_owner, settings):
    settings.CONTACTS_IMPORT_MAX_BYTES = 1000
    _, tenant = make_owner()
    report, _peak = measured_import(tenant, "grande.csv", b"telefone\n" + b"11987654321\n" * 200)
    assert report.error.startswith("The file is too large")


def test_the_row_limit_is_exact(make_owner, settings):
    settings.CONTACTS_IMPORT_MAX_ROWS = 3
    _, tenant = make_owner()
    rows = [f"11 9876{n:05d};site;05/03/2025" for n in range(4)]
    header = "telefone;origem;data_do_consentimento\n"
    fits, _peak = measured_import(tenant, "tres.csv", (header + "\n".join(rows[:3])).encode())
    assert fits.ok and fits.created == 3
    refused, _peak = measured_import(tenant, "quatro.csv", (header + "\n".join(rows)).encode())
    assert refused.error.startswith(TOO_MANY) and refused.created == 0


CSV_TEXT = "nome;telefone;origem;data_do_consentimento\nJoão Conceição;11 98765-4321;formulário;05/03/2025\n"


@pytest.mark.parametrize("encoded", [
    CSV_TEXT.encode("utf-8"),
    codecs.BOM_UTF8 + CSV_TEXT.encode("utf-8"),
    CSV_TEXT.encode("utf-16"),  # with its BOM, as Excel's "Unicode text" saves
    codecs.BOM_UTF16_BE + CSV_TEXT.encode("utf-16-be"),
    CSV_TEXT.encode("utf-16-le"),  # without BOM
    CSV_TEXT.encode("cp1252"),
], ids=["utf-8", "utf-8-bom", "utf-16-le-bom", "utf-16-be-bom", "utf-16-le", "cp1252"])
def test_encodings_are_detected(make_owner, encoded):
    _, tenant = make_owner()
    report, _peak = measured_import(tenant, "contatos.csv", encoded)
    assert report.ok and report.created == 1, report.error
    with scopes_disabled():
        contact = Contact.objects.get(tenant=tenant)
    assert contact.name == "João Conceição" and contact.consent_source == "formulário"


def test_an_unknown_encoding_gets_a_plain_portuguese_message_in_the_portal(owner_client):
    # 0x81 and 0x8d are bytes that neither UTF-8 nor cp1252 can decode.
    content = b"nome;telefone\nJo\x81o;11 98765-4321\n\x8d\n"
    upload = SimpleUploadedFile("contatos.csv", content, "text/csv")
    with translation.override("pt-br"):
        response = owner_client.post("/contatos/importar/", {"file": upload, "new_list": "Clientes"},
                                     HTTP_ACCEPT_LANGUAGE="pt-br")
    assert response.status_code == 400
    error = response.context["form"].errors["file"][0]
    assert "UTF-8" in error and "codec" not in error and "Error" not in error and "0x" not in error
    assert error != "The file's text encoding was not recognised. Save it as “CSV UTF-8” in your spreadsheet " \
                    "program and send it again."  # translated


def test_a_csv_with_nul_bytes_imports_clean_text(owner_client):
    content = b"nome;telefone;origem;data_do_consentimento\nAna\x00 Maria;11 98765-4321;si\x00te;05/03/2025\n"
    upload = SimpleUploadedFile("nul.csv", content, "text/csv")
    response = owner_client.post("/contatos/importar/", {"file": upload, "new_list": "Clientes"})
    assert response.status_code == 200, response.content.decode()
    with scopes_disabled():
        contact = Contact.objects.get(tenant=owner_client.tenant)
    assert contact.name == "Ana Maria" and contact.consent_source == "site"


def test_an_xml_bomb_is_refused(make_owner):
    """Entity expansion ("billion laughs") in a sheet is refused, not expanded."""
    _, tenant = make_owner()
    entities = '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    buffer = io.BytesIO(xlsx_package([header_row()]))
    with zipfile.ZipFile(buffer) as package:
        parts = {name: package.read(name) for name in package.namelist()}
    parts["xl/sharedStrings.xml"] = parts["xl/sharedStrings.xml"].replace(
        b"<sst", entities.encode() + b"<sst").replace(b"<t>data</t>", b"<t>&b;</t>")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as package:
        for name, data in parts.items():
            package.writestr(name, data)
    report, _peak = measured_import(tenant, "bomba.xlsx", out.getvalue(), XLSX)
    assert report.error and "could not be read" in report.error
