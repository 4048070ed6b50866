"""Contacts, lists, imports and opt-outs: the operations the portal and the receivers call.

Contacts
    save_contact(tenant, *, name, phone, consent_source, consent_at, fields, lists, contact=None) -> Contact
    delete_contact(contact)
    field_key(name) -> str                       the key a column or variable name is stored under
Lists
    create_list(tenant, name, description="") -> ContactList
Import (CSV or XLSX; one bad row never stops the others)
    import_contacts(tenant, upload, contact_list) -> ImportReport
        Columns: name, phone, consent source, consent date (Portuguese or English names, see
        COLUMNS), every other column becomes a custom field. A row is refused, with its line
        number and reason, for an invalid phone, missing or invalid consent, or a number
        repeated in the file. A number already among the tenant's contacts is reported as a
        duplicate and only added to the list (its data is not changed). The size is checked
        before reading, the rows are read as a stream (chips.spreadsheets) and reading stops at
        CONTACTS_IMPORT_MAX_ROWS: the whole file is then refused, nothing imported.
Opt-out
    opt_out_words(tenant) -> set[str] / is_opt_out(text, words) -> bool
    handle_inbound(message) -> None
        Called for every new inbound message (chips.receivers): an opt-out word unsubscribes
        the contact (created when unknown, so that it stays unsubscribed) and sends ONE
        confirmation; any other message marks the last campaign sent to that number as replied.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django_scopes import scope

from whago.models import Tenant

from . import errors, sending, spreadsheets
from .models import CampaignRecipient, CampaignSettings, Contact, ContactList, Message, campaign_zone
from .phones import normalize_phone

log = logging.getLogger(__name__)


class ContactError(Exception):
    """A contact operation was refused; .message says why, in the user's language."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- names ------------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Lower case without accents: how names and words are compared."""
    decomposed = unicodedata.normalize("NFKD", str(text or ""))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().strip()


def field_key(name: str) -> str:
    """The key of a custom field or template variable: "Data de Nascimento" → "data_de_nascimento"."""
    return re.sub(r"[^a-z0-9]+", "_", fold(name)).strip("_")[:60]


# Column names accepted for the fixed fields (compared through field_key).
COLUMNS = {
    "name": {"nome", "name", "nome_completo", "full_name", "cliente"},
    "phone": {"telefone", "phone", "celular", "whatsapp", "numero", "fone", "phone_number", "telefone_celular",
              "mobile"},
    "consent_source": {"origem_do_consentimento", "fonte_do_consentimento", "origem_consentimento",
                       "consentimento_origem", "consent_source", "consentimento", "consent", "origem"},
    "consent_at": {"data_do_consentimento", "data_consentimento", "consentimento_em", "consent_date", "consent_at",
                   "consented_at", "data_de_consentimento"},
}
MAX_FIELDS = 30
MAX_FIELD_LENGTH = 500


def clean_fields(raw: dict | None) -> dict[str, str]:
    """Custom fields as stored: normalised keys, text values, bounded."""
    cleaned: dict[str, str] = {}
    for name, value in (raw or {}).items():
        key = field_key(name)
        if not key or key in COLUMNS["name"] | COLUMNS["phone"]:
            continue
        cleaned[key] = "" if value is None else str(value).strip()[:MAX_FIELD_LENGTH]
        if len(cleaned) >= MAX_FIELDS:
            break
    return cleaned


# --- contacts and lists -------------------------------------------------------------------------


def _consent(consent_source: str, consent_at) -> tuple[str, datetime | None]:
    source = (consent_source or "").strip()[:200]
    if isinstance(consent_at, date) and not isinstance(consent_at, datetime):
        consent_at = datetime.combine(consent_at, time.min)
    if consent_at is not None and timezone.is_naive(consent_at):
        consent_at = timezone.make_aware(consent_at, campaign_zone())
    if bool(source) != bool(consent_at):
        raise ContactError(_("Record both where the consent came from and when it was given, or neither."))
    if consent_at and consent_at > timezone.now() + timedelta(minutes=5):
        raise ContactError(_("The consent date cannot be in the future."))
    return source, consent_at


def save_contact(
    tenant: Tenant,
    *,
    phone: str,
    name: str = "",
    consent_source: str = "",
    consent_at=None,
    fields: dict | None = None,
    lists=None,
    contact: Contact | None = None,
) -> Contact:
    """Create or update a contact; the phone is normalised to E.164 and unique per tenant."""
    try:
        e164 = normalize_phone(phone)
    except ValidationError as exc:
        raise ContactError(exc.messages[0])
    source, consent_at = _consent(consent_source, consent_at)
    with scope(tenant=tenant.pk):
        clash = Contact.objects.filter(tenant_id=tenant.pk, phone=e164)
        if contact is not None:
            clash = clash.exclude(pk=contact.pk)
        if clash.exists():
            raise ContactError(_("Another contact already has the number %(phone)s.") % {"phone": e164})
        target = contact or Contact(tenant_id=tenant.pk)
        target.name = (name or "").strip()[:150]
        target.phone = e164
        target.consent_source = source
        target.consent_at = consent_at
        target.fields = clean_fields(fields)
        try:
            with transaction.atomic():
                target.save()
                if lists is not None:
                    target.lists.set([lst for lst in lists if lst.tenant_id == tenant.pk])
        except IntegrityError:
            raise ContactError(_("Another contact already has the number %(phone)s.") % {"phone": e164})
    return target


def delete_contact(contact: Contact) -> None:
    """Delete a contact; campaigns keep their own copy of its number and name."""
    with scope(tenant=contact.tenant_id):
        Contact.objects.filter(pk=contact.pk).delete()


def create_list(tenant: Tenant, name: str, description: str = "") -> ContactList:
    """A new contact list with a unique name."""
    name = (name or "").strip()[:120]
    if not name:
        raise ContactError(_("Give the list a name."))
    with scope(tenant=tenant.pk):
        if ContactList.objects.filter(tenant_id=tenant.pk, name__iexact=name).exists():
            raise ContactError(_("A list named “%(name)s” already exists.") % {"name": name})
        try:
            return ContactList.objects.create(tenant_id=tenant.pk, name=name, description=(description or "")[:300])
        except IntegrityError:
            raise ContactError(_("A list named “%(name)s” already exists.") % {"name": name})


def list_for_import(tenant: Tenant, name: str, filename: str) -> tuple[ContactList, bool]:
    """The list an import goes into when none was chosen, and whether it is new: the list of that name, else a
    new one; with no name, a new list named after the file and the day. Never refused for its name, so the
    upload is not lost."""
    name = (name or "").strip()[:120]
    if name:
        with scope(tenant=tenant.pk):
            existing = ContactList.objects.filter(tenant_id=tenant.pk, name__iexact=name).first()
        return (existing, False) if existing else (create_list(tenant, name), True)
    stem = PurePath(filename or "").stem.strip()[:90] or _("Imported contacts")
    base = f"{stem} {timezone.localdate():%d/%m/%Y}"
    for n in range(1, 100):
        try:
            return create_list(tenant, base if n == 1 else f"{base} ({n})"), True
        except ContactError:
            continue  # that name is taken: the next number
    return create_list(tenant, f"{base} {timezone.localtime():%H:%M:%S}"), True


def in_lists(contacts, lists):
    """The contacts that belong to any of these lists (each once: a subquery, no join to deduplicate)."""
    membership = Contact.lists.through.objects.filter(contact_id=OuterRef("pk"), contactlist_id__in=[
        getattr(item, "pk", item) for item in lists])
    return contacts.filter(Exists(membership))


def custom_field_keys(tenant: Tenant, lists=None) -> set[str]:
    """The custom field keys the tenant's contacts (of these lists, when given) have."""
    with scope(tenant=tenant.pk):
        contacts = Contact.objects.filter(tenant_id=tenant.pk)
        if lists is not None:
            contacts = in_lists(contacts, lists)
        keys: set[str] = set()
        for values in contacts.exclude(fields={}).values_list("fields", flat=True).iterator(chunk_size=2000):
            if isinstance(values, dict):
                keys.update(values)
    return keys


# --- import -------------------------------------------------------------------------------------


@dataclass(slots=True)
class RowProblem:
    line: int
    phone: str
    reason: str
    code: str  # invalid_phone, duplicate, invalid_date, missing_consent, existing


@dataclass
class ImportReport:
    """What an import did: contacts created, existing ones added to the list, rows refused."""

    created: int = 0
    added_existing: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


DATE_FORMATS = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "%d/%m/%y", "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y")


def parse_consent_date(value: Any) -> datetime | None:
    """A consent date from a cell: a date/datetime, or text in Brazilian or ISO format."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time.min)
    else:
        text = str(value).strip()
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            for fmt in DATE_FORMATS:
                try:
                    moment = datetime.strptime(text, fmt)  # noqa: DTZ007 - made aware below
                    break
                except ValueError:
                    continue
            else:
                raise ValueError(text)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, campaign_zone())
    return moment


def _columns(header: list[Any]) -> tuple[dict[str, int], dict[int, str]]:
    fixed: dict[str, int] = {}
    custom: dict[int, str] = {}
    for index, title in enumerate(header):
        key = field_key(str(title or ""))
        if not key:
            continue
        for name, aliases in COLUMNS.items():
            if key in aliases and name not in fixed:
                fixed[name] = index
                break
        else:
            if len(custom) < MAX_FIELDS:
                custom[index] = key
    return fixed, custom


def _cell(row: list[Any], index: int | None) -> Any:
    if index is None or index >= len(row):
        return None
    value = row[index]
    return value.strip() if isinstance(value, str) else value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # phone numbers typed into Excel become numbers
    return str(value).strip()


def import_contacts(tenant: Tenant, upload, contact_list: ContactList) -> ImportReport:
    """Import contacts from a CSV/XLSX upload into a list; bad rows are reported, good rows kept.

    The file's size is checked before it is read and its rows are read as a stream: the row
    limit stops the reading, so a file of millions of rows costs no more than the limit's worth.
    """
    report = ImportReport()
    limit = settings.CONTACTS_IMPORT_MAX_BYTES
    too_large = (getattr(upload, "size", None) or 0) > limit
    if not too_large:
        content = upload.read(limit + 1) if hasattr(upload, "read") else bytes(upload)
        too_large = len(content) > limit
    if too_large:
        report.error = _("The file is too large: the limit is %(limit)s MB.") % {"limit": round(limit / 1048576, 1)}
        return report
    try:
        staged = _read_contacts(spreadsheets.read_rows(getattr(upload, "name", ""), content), report)
    except spreadsheets.UnreadableFile as exc:
        report.error = exc.message
    if report.error:
        report.problems = []
        return report
    _save_imported(tenant, contact_list, staged, report)
    report.problems.sort(key=lambda p: p.line)
    return report


def _too_many_rows() -> str:
    return _("Too many rows: at most %(max)s contacts per file.") % {"max": settings.CONTACTS_IMPORT_MAX_ROWS}


def _read_contacts(rows, report: ImportReport) -> list[_Staged]:
    """The valid rows of the file (refused ones go to report.problems); report.error when the file
    as a whole is refused. Stops reading as soon as the row limit is passed."""
    max_rows = settings.CONTACTS_IMPORT_MAX_ROWS
    max_lines = 2 * max_rows + 1  # blank lines are skipped but read: as many as the rows at most
    fixed: dict[str, int] | None = None
    custom: dict[int, str] = {}
    data_rows = 0
    seen: dict[str, int] = {}
    valid: list[_Staged] = []
    # Line numbers stay the file's own: blank rows are skipped, not removed.
    for line, row in enumerate(rows, start=1):
        if line > max_lines:
            report.error = _too_many_rows()
            return []
        if not any(_text(cell) for cell in row):
            continue
        if fixed is None:
            fixed, custom = _columns(row)
            if "phone" not in fixed:
                report.error = _("No phone column found. Name the columns: nome, telefone, origem_do_consentimento, "
                                 "data_do_consentimento (and any custom fields).")
                return []
            continue
        data_rows += 1
        if data_rows > max_rows:
            report.error = _too_many_rows()
            return []
        staged = _stage_row(line, row, fixed, custom, seen, report)
        if staged is not None:
            seen[staged.phone] = line
            valid.append(staged)
    if fixed is None:
        report.error = _("The file is empty.")
    return valid


@dataclass(slots=True)
class _Staged:
    """A valid row, waiting to be saved."""

    line: int
    phone: str
    name: str
    consent_source: str
    consent_at: datetime
    fields: dict[str, str]


def _stage_row(line: int, row: list[Any], fixed: dict[str, int], custom: dict[int, str], seen: dict[str, int],
               report: ImportReport) -> _Staged | None:
    """One data row checked: the contact to save, or None with the reason in report.problems."""
    raw_phone = _text(_cell(row, fixed["phone"]))
    try:
        phone = normalize_phone(raw_phone)
    except ValidationError as exc:
        report.problems.append(RowProblem(line, raw_phone, _("invalid phone: %(error)s") % {
            "error": exc.messages[0]}, "invalid_phone"))
        return None
    if phone in seen:
        report.problems.append(RowProblem(line, raw_phone, _("duplicate: the same number is on line %(line)s")
                                          % {"line": seen[phone]}, "duplicate"))
        return None
    source = _text(_cell(row, fixed.get("consent_source")))[:200]
    raw_date = _cell(row, fixed.get("consent_at"))
    try:
        consent_at = parse_consent_date(raw_date)
    except (ValueError, OverflowError):
        report.problems.append(RowProblem(line, raw_phone, _("invalid consent date: “%(value)s” (use "
                                                             "DD/MM/YYYY)") % {"value": raw_date}, "invalid_date"))
        return None
    if not source or consent_at is None:
        report.problems.append(RowProblem(line, raw_phone, _("missing consent: the consent source and date "
                                                             "are required"), "missing_consent"))
        return None
    if consent_at > timezone.now() + timedelta(minutes=5):
        report.problems.append(RowProblem(line, raw_phone, _("invalid consent date: it is in the future"),
                                          "invalid_date"))
        return None
    values = {key: _text(_cell(row, index)) for index, key in custom.items()}
    return _Staged(line, phone, _text(_cell(row, fixed.get("name")))[:150], source, consent_at,
                   clean_fields({k: v for k, v in values.items() if v != ""}))


def _save_imported(tenant: Tenant, contact_list: ContactList, staged: list[_Staged], report: ImportReport) -> None:
    """Create the new contacts and put new and existing ones in the list, in one transaction."""
    batch = 1000
    with scope(tenant=tenant.pk), transaction.atomic():
        existing: dict[str, int] = {}
        for start in range(0, len(staged), batch):
            existing.update(Contact.objects.filter(
                tenant_id=tenant.pk, phone__in=[row.phone for row in staged[start:start + batch]]
            ).values_list("phone", "pk"))
        new = [row for row in staged if row.phone not in existing]
        for row in staged:
            if row.phone in existing:
                report.problems.append(RowProblem(row.line, row.phone, _(
                    "duplicate: already in your contacts (added to the list, its data was not changed)"), "existing"))
        created: dict[str, int] = {}
        for start in range(0, len(new), batch):
            chunk = new[start:start + batch]
            Contact.objects.bulk_create([
                Contact(tenant_id=tenant.pk, name=row.name, phone=row.phone, consent_source=row.consent_source,
                        consent_at=row.consent_at, fields=row.fields) for row in chunk
            ], ignore_conflicts=True)
            created.update(Contact.objects.filter(tenant_id=tenant.pk, phone__in=[row.phone for row in chunk])
                           .values_list("phone", "pk"))
        ids = set(existing.values()) | set(created.values())
        through = Contact.lists.through
        already = set(through.objects.filter(contactlist_id=contact_list.pk, contact_id__in=ids)
                      .values_list("contact_id", flat=True))
        through.objects.bulk_create(
            [through(contact_id=pk, contactlist_id=contact_list.pk) for pk in ids - already], batch_size=batch
        )
        report.created = len(created)
        report.added_existing = len(existing)


# --- opt-out ------------------------------------------------------------------------------------


def campaign_settings(tenant: Tenant) -> CampaignSettings:
    """The tenant's opt-out settings (created with the defaults on first use)."""
    with scope(tenant=tenant.pk):
        found, _created = CampaignSettings.objects.get_or_create(tenant_id=tenant.pk)
    return found


def save_opt_out_settings(tenant: Tenant, words: str, reply: str) -> CampaignSettings:
    """Store the opt-out words (at least one) and the confirmation text."""
    cleaned = [w.strip() for w in (words or "").split(",") if w.strip()]
    if not cleaned:
        raise ContactError(_("Give at least one opt-out word."))
    found = campaign_settings(tenant)
    found.opt_out_words = ", ".join(dict.fromkeys(w.upper() for w in cleaned))[:500]
    found.opt_out_reply = (reply or "").strip()[:1000]
    with scope(tenant=tenant.pk):
        found.save()
    return found


def _word(text: str) -> str:
    """A message reduced for the opt-out comparison: folded, inner spaces collapsed, end punctuation dropped."""
    return re.sub(r"\s+", " ", fold(text)).strip(" .!?¡¿,;:\"'()*_~")


def opt_out_words(tenant: Tenant) -> set[str]:
    return {_word(w) for w in campaign_settings(tenant).opt_out_words.split(",") if _word(w)}


def is_opt_out(text: str, words: set[str]) -> bool:
    """Whether a whole message is one of the opt-out words (case, accents and end punctuation ignored)."""
    return bool(text) and _word(text) in words


def opt_out_reply(tenant: Tenant) -> str:
    custom = campaign_settings(tenant).opt_out_reply.strip()
    if custom:
        return custom
    with translation.override(settings.LANGUAGE_CODE):
        return _("You will not receive our campaigns anymore. If you change your mind, just let us know.")


def _last_recipient(tenant_id: int, phone: str):
    since = timezone.now() - timedelta(hours=settings.CAMPAIGN_REPLY_WINDOW_HOURS)
    return (
        CampaignRecipient.objects.filter(tenant_id=tenant_id, phone=phone, status=CampaignRecipient.Status.SENT,
                                         sent_at__gte=since)
        .order_by("-sent_at", "-pk")
        .first()
    )


def unsubscribe(tenant: Tenant, phone: str, chip=None, name: str = "") -> tuple[Contact, bool]:
    """Mark the number unsubscribed (creating the contact when unknown, named `name`: the WhatsApp name it
    sent); returns (contact, changed now)."""
    now = timezone.now()
    with scope(tenant=tenant.pk):
        contact = Contact.objects.filter(tenant_id=tenant.pk, phone=phone).first()
        if contact is None:
            try:
                with transaction.atomic():
                    contact = Contact.objects.create(tenant_id=tenant.pk, phone=phone, unsubscribed_at=now,
                                                     unsubscribed_chip=chip, name=name.strip()[:150])
                return contact, True
            except IntegrityError:
                contact = Contact.objects.get(tenant_id=tenant.pk, phone=phone)
        # Only the first opt-out changes the row: a repeated word (or a race) sends nothing more.
        changed = Contact.objects.filter(pk=contact.pk, unsubscribed_at__isnull=True).update(
            unsubscribed_at=now, unsubscribed_chip=chip, updated_at=now
        )
        contact.refresh_from_db()
    return contact, bool(changed)


def handle_inbound(message: Message) -> None:
    """React to a new inbound message: opt-out (with one confirmation) or a reply to a campaign."""

    if message.direction != Message.Direction.IN:
        return
    tenant = message.tenant
    with scope(tenant=tenant.pk):
        recipient = _last_recipient(tenant.pk, message.peer)
        if not is_opt_out(message.body, opt_out_words(tenant)):
            if recipient is not None and recipient.replied_at is None:
                CampaignRecipient.objects.filter(pk=recipient.pk, replied_at__isnull=True).update(
                    replied_at=message.created_at)
            return
        contact, changed = unsubscribe(tenant, message.peer, message.chip, name=message.peer_name)
        if not changed:
            return
        if recipient is not None:
            CampaignRecipient.objects.filter(pk=recipient.pk).update(opted_out_at=contact.unsubscribed_at)
    try:
        sending.send_message(
            tenant, message.chip, message.peer, text=opt_out_reply(tenant),
            idempotency_key=f"opt-out-{contact.pk}-{int(contact.unsubscribed_at.timestamp())}", source="opt-out",
        )
    except errors.SendRefused as exc:
        log.warning("opt-out confirmation to contact %s not sent: %s", contact.pk, exc.message)
