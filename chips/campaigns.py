"""Campaigns: building, message templates, status changes, progress and reports.

Building (drafts only)
    save_campaign(tenant, *, name, template, lists, chips, ..., campaign=None, user=None) -> Campaign
    pace_limit(tenant) -> int                 messages per minute per chip the plan allows (0: no limit)
Templates
    template_variables(template) -> list[str] / unknown_variables(template, keys) -> list[str]
    render(template, name, phone, fields) -> str         {nome}, {primeiro_nome}, {telefone}, custom fields;
                                                         {cidade|nossa loja}: the text after | when empty
    holes(template, name, fields) -> list[str]           variables left empty for a contact (no fallback)
    unfilled(tenant, template, lists) -> list[Unfilled]  which recipients lack which variables (count, sample)
    preview(tenant, template, lists) -> Preview          for the builder (htmx)
Status (every change through Campaign.transition, guarded against concurrent changes)
    start(campaign, scheduled=False)  draft → scheduled (start date ahead) or running; scheduled → running
    unschedule(campaign) / pause(campaign, reason) / resume(campaign) / cancel(campaign)
    delete_draft(campaign)
Reading
    progress(campaign) -> dict                sent, delivered, read, failed, replied, skipped, opted out…
    recipients(campaign, outcome, search)     with an `outcome` annotation, for the table and CSV
    timeline(campaign) / chip_report(tenant, days) / dashboard_summary(tenant)

The sending itself is in chips/dispatch.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, CharField, Count, DateTimeField, Max, Min, Q, Value, When
from django.db.models.functions import Trim, Trunc
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django_scopes import scope

from billing import limits
from whago.models import Tenant

from . import errors, sending, signals
from .contacts import custom_field_keys, field_key, in_lists
from .models import Campaign, CampaignChip, CampaignRecipient, Chip, Contact, Message, campaign_zone
from .phones import display_phone

Status = Campaign.Status
R = CampaignRecipient.Status

BUILTIN_VARIABLES = ("nome", "primeiro_nome", "telefone")
# {name} or {name|fallback}; {{ and }} are literal braces.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}\n]{0,200})\}")
UNFILLED_SAMPLE = 5
MAX_TEXT_LENGTH = 4096


class CampaignError(Exception):
    """A campaign operation was refused; .message says why, in the user's language."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- templates ----------------------------------------------------------------------------------


def _parts(inside: str) -> tuple[str, str]:
    """A variable as written between braces: its name and its fallback ("" when none)."""
    name, _bar, fallback = inside.partition("|")
    return name, fallback.strip()


def template_variables(template: str) -> list[str]:
    """The variables a template uses, as written between braces without their fallbacks."""
    return [_parts(m.group(1))[0] for m in _TOKEN.finditer(template or "") if m.group(1) is not None]


def required_variables(template: str) -> list[str]:
    """The keys of the variables used at least once without a fallback ({telefone} is never empty)."""
    keys = []
    for m in _TOKEN.finditer(template or ""):
        if m.group(1) is None:
            continue
        name, fallback = _parts(m.group(1))
        key = field_key(name)
        if key and not fallback and key != "telefone" and key not in keys:
            keys.append(key)
    return keys


def _values(name: str, phone: str, fields: dict | None) -> dict:
    name = (name or "").strip()
    return {**(fields or {}), "nome": name, "primeiro_nome": name.split()[0] if name else "",
            "telefone": display_phone(phone) if phone else ""}


def unknown_variables(template: str, keys: set[str]) -> list[str]:
    """Variables of the template that are neither built in nor a custom field in `keys`."""
    known = set(BUILTIN_VARIABLES) | set(keys)
    unknown = []
    for written in template_variables(template):
        if field_key(written) not in known and written not in unknown:
            unknown.append(written)
    return unknown


def render(template: str, name: str = "", phone: str = "", fields: dict | None = None) -> str:
    """The message a contact receives: variables replaced; an empty one by its fallback ({cidade|nossa loja}).

    A variable without fallback that the contact lacks would be left empty: campaigns never start
    with such recipients (unfilled) and the sender skips one that lost a value since (holes)."""
    values = _values(name, phone, fields)

    def replace(match: re.Match) -> str:
        written = match.group(0)
        if written in ("{{", "}}"):
            return written[0]
        variable, fallback = _parts(match.group(1))
        return str(values.get(field_key(variable), "")).strip() or fallback

    return _TOKEN.sub(replace, template or "").strip()


def holes(template: str, name: str = "", fields: dict | None = None) -> list[str]:
    """The variables without fallback that would be empty in this contact's message."""
    values = _values(name, "+0", fields)
    return [key for key in required_variables(template) if not str(values.get(key, "")).strip()]


def variables_help(keys: set[str]) -> str:
    return ", ".join("{" + key + "}" for key in (*BUILTIN_VARIABLES, *sorted(keys)))


def unknown_message(unknown: list[str], keys: set[str]) -> str:
    return _("Unknown variable(s): %(unknown)s. Available: %(known)s.") % {
        "unknown": ", ".join("{" + v + "}" for v in unknown), "known": variables_help(keys)}


@dataclass
class Unfilled:
    """Recipients who lack a variable that has no fallback: how many, and the first few."""
    variable: str
    count: int
    sample: list[dict]  # {"pk", "label"}

    @property
    def token(self) -> str:
        return "{" + self.variable + "}"

    @property
    def example(self) -> str:
        return "{" + self.variable + "|" + _("fallback text") + "}"


def unfilled(tenant: Tenant, template: str, lists) -> list[Unfilled]:
    """For each variable without fallback, the contacts of the lists (those a campaign would send to)
    who have no value for it: one count and one sample query per variable, in SQL."""
    lists = list(lists or [])
    keys = required_variables(template)
    if not lists or not keys:
        return []
    result = []
    with scope(tenant=tenant.pk):
        contacts = reachable(in_lists(Contact.objects.filter(tenant_id=tenant.pk), lists))
        for key in keys:
            if key in ("nome", "primeiro_nome"):
                lacking = contacts.annotate(name_trimmed=Trim("name")).filter(name_trimmed="")
            else:
                lacking = contacts.filter(~Q(fields__has_key=key) | Q(**{f"fields__{key}": ""}))
            count = lacking.count()
            if count:
                sample = [{"pk": row["pk"], "label": row["name"] or display_phone(row["phone"])}
                          for row in lacking.order_by("pk").values("pk", "name", "phone")[:UNFILLED_SAMPLE]]
                result.append(Unfilled(key, count, sample))
    return result


def unfilled_message(missing: list[Unfilled]) -> str:
    """Why a campaign cannot start: each variable, how many recipients lack it, and a few of them."""
    parts = []
    for item in missing:
        names = ", ".join(row["label"] for row in item.sample) + (", …" if item.count > len(item.sample) else "")
        parts.append(ngettext("%(variable)s: %(count)s recipient (%(names)s)",
                              "%(variable)s: %(count)s recipients (%(names)s)", item.count)
                     % {"variable": item.token, "count": item.count, "names": names})
    return _("Some recipients have no value for a variable that has no fallback, so their message would have a "
             "hole: %(list)s. Fill the field in these contacts, or give the variable a fallback, e.g. "
             "%(example)s.") % {"list": "; ".join(parts), "example": missing[0].example}


@dataclass
class Preview:
    text: str = ""
    contact_name: str = ""
    errors: list[str] = field(default_factory=list)
    variables: str = ""
    unfilled: list[Unfilled] = field(default_factory=list)


def preview(tenant: Tenant, template: str, lists) -> Preview:
    """The template rendered for the first consenting contact of the lists (or sample values)."""
    lists = list(lists or [])
    keys = custom_field_keys(tenant, lists or None)
    result = Preview(variables=variables_help(keys))
    if not (template or "").strip():
        result.errors.append(_("Write the message."))
        return result
    unknown = unknown_variables(template, keys)
    if unknown:
        result.errors.append(unknown_message(unknown, keys))
    with scope(tenant=tenant.pk):
        contacts = reachable(Contact.objects.filter(tenant_id=tenant.pk))
        if lists:
            contacts = in_lists(contacts, lists)
        contact = contacts.order_by("pk").first()
    if contact is not None:
        result.text = render(template, contact.name, contact.phone, contact.fields)
        result.contact_name = contact.name or contact.display_phone
    else:
        result.text = render(template, _("Maria Silva"), "+5511987654321", {key: f"[{key}]" for key in keys})
    if len(result.text) > MAX_TEXT_LENGTH:
        result.errors.append(_("The message is too long: at most %(max)s characters.") % {"max": MAX_TEXT_LENGTH})
    if not unknown:
        result.unfilled = unfilled(tenant, template, lists)
    return result


# --- building ------------------------------------------------------------------------------------


def pace_limit(tenant: Tenant) -> int:
    """Messages per minute per chip the tenant's plan allows (0: no limit), from CAMPAIGN_PACE_LIMITS."""
    table = {}
    for item in settings.CAMPAIGN_PACE_LIMITS:
        code, _sep, value = str(item).partition("=")
        if value.strip().isdigit():
            table[code.strip().upper()] = int(value)
    plan = limits.current_plan(tenant).code.upper()
    return table.get(plan, table.get("*", 20))


def _check(tenant: Tenant, *, name: str, template: str, lists: list, chips: list, window_days, window_start,
           window_end, pace_per_minute: int) -> None:
    if not (name or "").strip():
        raise CampaignError(_("Give the campaign a name."))
    if not (template or "").strip():
        raise CampaignError(_("Write the message."))
    if len(template) > MAX_TEXT_LENGTH:
        raise CampaignError(_("The message is too long: at most %(max)s characters.") % {"max": MAX_TEXT_LENGTH})
    if any(lst.tenant_id != tenant.pk for lst in lists) or any(chip.tenant_id != tenant.pk for chip in chips):
        raise CampaignError(_("Choose your own lists and chips."))
    keys = custom_field_keys(tenant, lists or None)
    unknown = unknown_variables(template, keys)
    if unknown:
        raise CampaignError(unknown_message(unknown, keys))
    if not window_days or any(day not in range(7) for day in window_days):
        raise CampaignError(_("Choose at least one day of the week to send on."))
    if window_start >= window_end:
        raise CampaignError(_("The send window must end after it starts (on the same day)."))
    allowed = pace_limit(tenant)
    if pace_per_minute < 0 or (allowed and not 1 <= pace_per_minute <= allowed):
        raise CampaignError(_("The pace must be between 1 and %(max)s messages per minute per chip on your plan.")
                            % {"max": allowed})


def save_campaign(
    tenant: Tenant,
    *,
    name: str,
    template: str,
    lists,
    chips,
    window_days,
    window_start,
    window_end,
    pace_per_minute: int,
    start_at=None,
    media=None,
    remove_media: bool = False,
    campaign: Campaign | None = None,
    user=None,
) -> Campaign:
    """Create a draft or change one; raises CampaignError with the reason when something is invalid."""
    lists, chips = list(lists or []), list(chips or [])
    window_days = sorted({int(day) for day in window_days or []})
    _check(tenant, name=name, template=template, lists=lists, chips=chips, window_days=window_days,
           window_start=window_start, window_end=window_end, pace_per_minute=pace_per_minute)
    if campaign is not None and not campaign.is_editable:
        raise CampaignError(_("Only a draft can be changed. Move it back to draft first."))
    content = None
    if media is not None:
        kind = Message.Kind.IMAGE if (getattr(media, "content_type", "") or "").startswith("image/") else (
            Message.Kind.DOCUMENT)
        try:
            content, filename, mimetype = sending.media_file(kind, media, None, None)
        except errors.SendRefused as exc:
            raise CampaignError(exc.message)
    with scope(tenant=tenant.pk), transaction.atomic():
        target = campaign or Campaign(tenant_id=tenant.pk, created_by=user)
        target.name = name.strip()[:120]
        target.template = template.strip()
        target.window_days = window_days
        target.window_start = window_start
        target.window_end = window_end
        target.pace_per_minute = pace_per_minute
        target.start_at = start_at
        old_media = target.media.name if target.media else ""
        if content is not None:
            target.media.save(content.name, content, save=False)
            target.media_kind, target.media_name, target.media_mimetype = kind, filename, mimetype
        elif remove_media:
            target.media = ""
            target.media_kind = target.media_name = target.media_mimetype = ""
        target.save()
        target.lists.set(lists)
        CampaignChip.objects.filter(campaign=target).exclude(chip__in=chips).delete()
        for chip in chips:
            CampaignChip.objects.get_or_create(campaign=target, chip=chip)
        if old_media and old_media != (target.media.name if target.media else ""):
            name_to_delete = old_media
            transaction.on_commit(lambda: target.media.storage.delete(name_to_delete))
    return target


def delete_draft(campaign: Campaign) -> None:
    """Delete a draft (campaigns that ran are kept: they are the history)."""
    if campaign.status not in (Status.DRAFT, Status.CANCELED) or campaign.started_at:
        raise CampaignError(_("Only a draft that never ran can be deleted. Cancel it instead."))
    with scope(tenant=campaign.tenant_id):
        media = campaign.media.name if campaign.media else ""
        Campaign.objects.filter(pk=campaign.pk).delete()
    if media:
        campaign.media.storage.delete(media)


# --- status ----------------------------------------------------------------------------------


def _targets(campaign: Campaign):
    return in_lists(Contact.objects.filter(tenant_id=campaign.tenant_id),
                    campaign.lists.values_list("pk", flat=True))


def _skip_reason(consent_at, consent_source: str, unsubscribed_at) -> str:
    if unsubscribed_at is not None:
        return _("opted out on %(date)s") % {"date": timezone.localtime(unsubscribed_at).strftime("%d/%m/%Y %H:%M")}
    if consent_at is None or not (consent_source or "").strip():
        return _("no recorded consent")
    return ""


def reachable(contacts):
    """The contacts a campaign may send to: the rule of _skip_reason, in SQL (consent recorded,
    where and when; not opted out)."""
    return (contacts.filter(consent_at__isnull=False, unsubscribed_at__isnull=True)
            .annotate(consent_source_trimmed=Trim("consent_source")).exclude(consent_source_trimmed=""))


def skip_reason(contact: Contact | None) -> str:
    """Why a contact must not receive a campaign ("" when it may)."""
    if contact is None:
        return _("the contact was deleted")
    return _skip_reason(contact.consent_at, contact.consent_source, contact.unsubscribed_at)


def _materialize(campaign: Campaign) -> int:
    """Create the campaign's recipients from its lists (once); those who may not receive it are skipped.

    The recipients who may receive it (usually nearly all) are copied by the database in one
    INSERT … SELECT; the others are listed here, each with the reason it is skipped.
    """
    if CampaignRecipient.objects.filter(campaign_id=campaign.pk).exists():
        return 0
    targets = _targets(campaign)
    eligible = reachable(targets)
    copied = eligible.order_by("pk").annotate(
        r_campaign=Value(campaign.pk), r_status=Value(R.PENDING), r_retries=Value(0), r_error=Value(""),
        r_updated=Value(timezone.now(), output_field=DateTimeField()),
    ).values_list("tenant_id", "r_campaign", "pk", "phone", "name", "r_status", "r_retries", "r_error", "r_updated")
    fields = ("tenant", "campaign", "contact", "phone", "name", "status", "retries", "error", "updated_at")
    quote = connection.ops.quote_name
    columns = ", ".join(quote(CampaignRecipient._meta.get_field(name).column) for name in fields)
    select, params = copied.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(CampaignRecipient._meta.db_table)} ({columns}) {select}", params)  # noqa: S608 - names from the model
        count = cursor.rowcount
    skipped = []
    for contact in targets.exclude(pk__in=eligible.values("pk")).order_by("pk").values(
            "pk", "phone", "name", "consent_at", "consent_source", "unsubscribed_at").iterator(chunk_size=2000):
        skipped.append(CampaignRecipient(
            tenant_id=campaign.tenant_id, campaign_id=campaign.pk, contact_id=contact["pk"], phone=contact["phone"],
            name=contact["name"], status=R.SKIPPED,
            error=_skip_reason(contact["consent_at"], contact["consent_source"], contact["unsubscribed_at"]),
        ))
    CampaignRecipient.objects.bulk_create(skipped, batch_size=2000)
    return count + len(skipped)


def _limit_message(tenant: Tenant) -> str:
    limit = limits.campaign_limit(tenant)
    if not limit:
        return _("Your plan does not include campaigns. Upgrade your plan on the Billing page.")
    return _("Your plan allows %(limit)s campaign(s) running at once. Wait for one to finish, pause one, or upgrade "
             "your plan.") % {"limit": limit}


def start(campaign: Campaign, scheduled: bool = False) -> Campaign:
    """Start a draft (scheduled when its start date is ahead) or a scheduled campaign, within the plan."""
    now = timezone.now()
    with scope(tenant=campaign.tenant_id), transaction.atomic():
        tenant = Tenant.objects.select_for_update(no_key=True).get(pk=campaign.tenant_id)
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status not in (Status.DRAFT, Status.SCHEDULED):
            raise CampaignError(_("This campaign was already started."))
        lists = list(campaign.lists.all())
        chips = list(campaign.chips.all())
        _check(tenant, name=campaign.name, template=campaign.template, lists=lists, chips=chips,
               window_days=campaign.window_days, window_start=campaign.window_start,
               window_end=campaign.window_end, pace_per_minute=campaign.pace_per_minute)
        if not lists:
            raise CampaignError(_("Choose at least one contact list."))
        if not chips:
            raise CampaignError(_("Choose at least one chip to send from."))
        count = _targets(campaign).count()
        if not count:
            raise CampaignError(_("The chosen lists have no contacts."))
        most = limits.campaign_recipient_limit(tenant)
        if count > most:
            raise CampaignError(_("The lists hold %(count)s contacts and your plan allows %(max)s per campaign.")
                                % {"count": count, "max": most})
        missing = unfilled(tenant, campaign.template, lists)
        if missing:
            raise CampaignError(unfilled_message(missing))
        if campaign.status == Status.DRAFT and campaign.start_at and campaign.start_at > now:
            campaign.transition(Status.SCHEDULED)
            return campaign
        if scheduled and (campaign.start_at is None or campaign.start_at > now):
            return campaign
        running = Campaign.objects.filter(tenant_id=tenant.pk, status=Status.RUNNING).count()
        if not limits.can_start_campaign(tenant, running):
            raise CampaignError(_limit_message(tenant))
        _materialize(campaign)
        campaign.transition(Status.RUNNING)
        signals.campaign_running.send(sender=Campaign, campaign=campaign)
    return campaign


def unschedule(campaign: Campaign) -> Campaign:
    """A scheduled campaign back to draft (editable again)."""
    if not campaign.transition(Status.DRAFT):
        raise CampaignError(_("Only a scheduled campaign can go back to draft."))
    return campaign


def pause(campaign: Campaign, reason: str = "") -> Campaign:
    """Stop sending (lanes notice within about a second); resume() continues where it stopped."""
    if not campaign.transition(Status.PAUSED, reason or _("Paused by a user.")):
        raise CampaignError(_("Only a running campaign can be paused."))
    return campaign


def resume(campaign: Campaign) -> Campaign:
    """Continue a paused campaign, within the plan's limit of campaigns running at once."""
    with scope(tenant=campaign.tenant_id), transaction.atomic():
        tenant = Tenant.objects.select_for_update(no_key=True).get(pk=campaign.tenant_id)
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status != Status.PAUSED:
            raise CampaignError(_("Only a paused campaign can be resumed."))
        running = Campaign.objects.filter(tenant_id=tenant.pk, status=Status.RUNNING).count()
        if not limits.can_start_campaign(tenant, running):
            raise CampaignError(_limit_message(tenant))
        campaign.transition(Status.RUNNING)
        signals.campaign_running.send(sender=Campaign, campaign=campaign)
    return campaign


def cancel(campaign: Campaign) -> Campaign:
    """Stop for good: recipients not sent yet are skipped."""
    with scope(tenant=campaign.tenant_id), transaction.atomic():
        if not campaign.transition(Status.CANCELED, _("Canceled by a user.")):
            raise CampaignError(_("This campaign has already finished."))
        CampaignRecipient.objects.filter(campaign_id=campaign.pk, status=R.PENDING).update(
            status=R.SKIPPED, error=_("campaign canceled"))
    return campaign


# --- reading ---------------------------------------------------------------------------------

OUTCOMES = ("pending", "sent", "delivered", "read", "failed", "skipped")

OUTCOME = Case(
    When(status=R.SKIPPED, then=Value("skipped")),
    When(status=R.FAILED, then=Value("failed")),
    When(status__in=[R.PENDING, R.CLAIMED], then=Value("pending")),
    When(message__status=Message.Status.FAILED, then=Value("failed")),
    When(message__status=Message.Status.READ, then=Value("read")),
    When(message__status=Message.Status.DELIVERED, then=Value("delivered")),
    default=Value("sent"),
    output_field=CharField(),
)


def progress(campaign: Campaign) -> dict:
    """Counters of the campaign's recipients, for the live progress bar."""
    delivered = [Message.Status.DELIVERED, Message.Status.READ]
    with scope(tenant=campaign.tenant_id):
        counts = CampaignRecipient.objects.filter(campaign_id=campaign.pk).aggregate(
            total=Count("pk"),
            pending=Count("pk", filter=Q(status__in=[R.PENDING, R.CLAIMED])),
            sent=Count("pk", filter=Q(status=R.SENT)),
            delivered=Count("pk", filter=Q(status=R.SENT, message__status__in=delivered)),
            read=Count("pk", filter=Q(status=R.SENT, message__status=Message.Status.READ)),
            failed=Count("pk", filter=Q(status=R.FAILED) | Q(status=R.SENT, message__status=Message.Status.FAILED)),
            failed_after_sending=Count("pk", filter=Q(status=R.SENT, message__status=Message.Status.FAILED)),
            skipped=Count("pk", filter=Q(status=R.SKIPPED)),
            replied=Count("pk", filter=Q(replied_at__isnull=False)),
            opted_out=Count("pk", filter=Q(opted_out_at__isnull=False)),
        )
        working = Chip.objects.filter(pk__in=CampaignChip.objects.filter(campaign_id=campaign.pk).values("chip_id"),
                                      status=Chip.Status.WORKING).count()
    total = counts["total"]
    done = total - counts["pending"]
    counts["done"] = done
    counts["percent"] = round(100 * done / total) if total else (100 if campaign.is_final else 0)
    base = counts["sent"] or 1
    counts["delivered_rate"] = round(100 * counts["delivered"] / base, 1) if counts["sent"] else 0
    counts["read_rate"] = round(100 * counts["read"] / base, 1) if counts["sent"] else 0
    # Widths of the progress bar's segments (each recipient counted once).
    counts["bar"] = {
        "read": counts["read"], "delivered": counts["delivered"] - counts["read"],
        "sent": counts["sent"] - counts["delivered"] - counts["failed_after_sending"],
        "failed": counts["failed"], "skipped": counts["skipped"], "pending": counts["pending"],
    }
    counts["working_chips"] = working
    counts["in_window"] = campaign.in_window()
    counts["window_opens"] = None if counts["in_window"] else window_opens(campaign)
    return counts


def window_opens(campaign: Campaign, now=None):
    """When the send window opens next, as a naive date and time of the campaign time zone (None: no day)."""
    local = timezone.localtime(now or timezone.now(), campaign_zone()).replace(tzinfo=None)
    for offset in range(8):
        day = (local + timedelta(days=offset)).date()
        if day.weekday() not in (campaign.window_days or []):
            continue
        opens = datetime.combine(day, campaign.window_start)
        if offset == 0 and local.time() > campaign.window_end:
            continue
        return max(opens, local.replace(second=0, microsecond=0))
    return None


def recipients(campaign: Campaign, outcome: str = "", search: str = ""):
    """The campaign's recipients with their `outcome`, filtered for the table and the CSV export."""
    rows = (
        CampaignRecipient.objects.filter(campaign_id=campaign.pk)
        .select_related("message", "chip")
        .annotate(outcome=OUTCOME)
        .order_by("pk")
    )
    if outcome in OUTCOMES:
        rows = rows.filter(outcome=outcome)
    elif outcome == "replied":
        rows = rows.filter(replied_at__isnull=False)
    elif outcome == "opted_out":
        rows = rows.filter(opted_out_at__isnull=False)
    search = (search or "").strip()
    if search:
        digits = "".join(ch for ch in search if ch.isdigit())
        condition = Q(name__icontains=search)
        if digits:
            condition |= Q(phone__contains=digits)
        rows = rows.filter(condition)
    return rows


def _bucket_kind(first, last) -> str:
    span = (last - first) if first and last else timedelta(0)
    if span <= timedelta(hours=3):
        return "minute"
    if span <= timedelta(days=7):
        return "hour"
    return "day"


def _series(messages, kind: str) -> list[dict]:
    rows = (
        messages.annotate(bucket=Trunc("sent_at", kind, tzinfo=campaign_zone()))
        .values("bucket")
        .annotate(sent=Count("pk"), delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
                  read=Count("pk", filter=Q(read_at__isnull=False)))
        .order_by("bucket")
    )
    fmt = {"minute": "%d/%m %H:%M", "hour": "%d/%m %Hh", "day": "%d/%m/%Y"}[kind]
    return [
        {
            "key": row["bucket"].isoformat(),
            "label": timezone.localtime(row["bucket"], campaign_zone()).strftime(fmt),
            "sent": row["sent"],
            "delivered": row["delivered"],
            "read": row["read"],
            "delivered_rate": round(100 * row["delivered"] / row["sent"], 1) if row["sent"] else 0,
            "read_rate": round(100 * row["read"] / row["sent"], 1) if row["sent"] else 0,
        }
        for row in rows
    ]


def timeline(campaign: Campaign) -> list[dict]:
    """Delivery and read rates of the messages sent in each period of the campaign."""
    with scope(tenant=campaign.tenant_id):
        messages = Message.objects.filter(campaign_recipient__campaign_id=campaign.pk, sent_at__isnull=False)
        span = messages.aggregate(first=Min("sent_at"), last=Max("sent_at"))
        return _series(messages, _bucket_kind(span["first"], span["last"]))


def by_chip(campaign: Campaign) -> list[dict]:
    """The campaign's counters per chip it sent from."""
    with scope(tenant=campaign.tenant_id):
        rows = (
            CampaignRecipient.objects.filter(campaign_id=campaign.pk, message__isnull=False)
            .values("message__chip_id", "message__chip__alias")
            .annotate(
                sent=Count("pk", filter=Q(status=R.SENT)),
                delivered=Count("pk", filter=Q(message__delivered_at__isnull=False)),
                read=Count("pk", filter=Q(message__read_at__isnull=False)),
                failed=Count("pk", filter=Q(status=R.FAILED) | Q(message__status=Message.Status.FAILED)),
                replied=Count("pk", filter=Q(replied_at__isnull=False)),
                opted_out=Count("pk", filter=Q(opted_out_at__isnull=False)),
            )
            .order_by("message__chip__alias")
        )
        return [{"chip": row.pop("message__chip__alias"), "chip_id": row.pop("message__chip_id"), **row}
                for row in rows]


def chip_report(tenant: Tenant, days: int = 14) -> dict:
    """Campaign messages per chip over the last `days`: totals, replies, opt-outs, daily rates."""
    since = timezone.now() - timedelta(days=days)
    with scope(tenant=tenant.pk):
        chips = list(Chip.all_objects.filter(tenant_id=tenant.pk).order_by("created_at", "pk"))
        messages = Message.objects.filter(tenant_id=tenant.pk, campaign_recipient__isnull=False,
                                          sent_at__gte=since)
        kind = "day" if days > 3 else "hour"
        report = []
        for chip in chips:
            mine = messages.filter(chip=chip)
            totals = mine.aggregate(
                sent=Count("pk"), delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
                read=Count("pk", filter=Q(read_at__isnull=False)),
                failed=Count("pk", filter=Q(status=Message.Status.FAILED)),
                replied=Count("pk", filter=Q(campaign_recipient__replied_at__isnull=False)),
                # Opt-outs in answer to these campaign messages, as each campaign's report counts them (not
                # every contact who unsubscribed through the chip).
                opted_out=Count("pk", filter=Q(campaign_recipient__opted_out_at__isnull=False)),
            )
            if not totals["sent"] and not totals["opted_out"] and chip.is_deleted:
                continue
            sent = totals["sent"]
            totals["delivered_rate"] = round(100 * totals["delivered"] / sent, 1) if sent else 0
            totals["read_rate"] = round(100 * totals["read"] / sent, 1) if sent else 0
            report.append({"chip": chip, "totals": totals, "series": _series(mine, kind)})
    points = sorted({(point["key"], point["label"]) for row in report for point in row["series"]})
    return {"chips": report, "labels": [label for _key, label in points], "keys": [key for key, _label in points],
            "days": days}


def dashboard_summary(tenant: Tenant) -> dict:
    """What the Painel shows about campaigns: active ones with progress, last 7 days' rates."""
    since = timezone.now() - timedelta(days=7)
    with scope(tenant=tenant.pk):
        active = list(Campaign.objects.filter(tenant_id=tenant.pk, status__in=[
            Status.RUNNING, Status.PAUSED, Status.SCHEDULED]).order_by("-created_at")[:5])
        week = Message.objects.filter(tenant_id=tenant.pk, campaign_recipient__isnull=False, sent_at__gte=since)
        totals = week.aggregate(sent=Count("pk"), delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
                                read=Count("pk", filter=Q(read_at__isnull=False)),
                                replied=Count("pk", filter=Q(campaign_recipient__replied_at__isnull=False)))
        totals["opted_out"] = Contact.objects.filter(tenant_id=tenant.pk, unsubscribed_at__gte=since).count()
        totals["contacts"] = Contact.objects.filter(tenant_id=tenant.pk).count()
    sent = totals["sent"]
    totals["delivered_rate"] = round(100 * totals["delivered"] / sent, 1) if sent else 0
    totals["read_rate"] = round(100 * totals["read"] / sent, 1) if sent else 0
    return {"active": [(c, progress(c)) for c in active], "week": totals}
