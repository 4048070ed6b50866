"""Portal pages of contacts, lists and campaigns: builder with preview, live progress, reports."""
from contextlib import contextmanager

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from whago.tenancy import manager_required, tenant_required

from . import campaigns, contacts, spreadsheets
from .campaign_forms import (
    WEEKDAYS,
    CampaignForm,
    ContactFilterForm,
    ContactForm,
    ContactListForm,
    ImportForm,
    OptOutForm,
    RecipientFilterForm,
)
from .models import Campaign, Chip, Contact, ContactList, campaign_zone

PAGE_SIZE = 50


def _campaign(pk: int) -> Campaign:
    """One of the current tenant's campaigns (the scope hides the others: 404)."""
    return get_object_or_404(Campaign, pk=pk)


# --- contacts -------------------------------------------------------------------------------------


@tenant_required
def contact_list(request: HttpRequest) -> HttpResponse:
    """Contacts with search and filters; the page to create, import and manage lists."""
    form = ContactFilterForm(request.GET or None, tenant=request.tenant)
    rows = Contact.objects.prefetch_related("lists").order_by("name", "phone", "pk")
    if form.is_valid():
        query = form.cleaned_data["q"].strip()
        if query:
            digits = "".join(ch for ch in query if ch.isdigit())
            condition = Q(name__icontains=query)
            if digits:
                condition |= Q(phone__contains=digits)
            rows = rows.filter(condition)
        if form.cleaned_data["contact_list"]:
            rows = rows.filter(lists=form.cleaned_data["contact_list"])
        state = form.cleaned_data["state"]
        if state == "ok":
            rows = campaigns.reachable(rows)
        elif state == "no_consent":
            rows = rows.filter(Q(consent_at__isnull=True) | Q(consent_source=""))
        elif state == "opted_out":
            rows = rows.filter(unsubscribed_at__isnull=False)
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"section": "campaigns", "tab": "contacts", "page": page, "filter_form": form,
               "query": query.urlencode(), "total": Contact.objects.count()}
    return render(request, "portal/contacts/list.html", context)


def _contact_form_response(request, form, contact=None, status=200):
    context = {"section": "campaigns", "tab": "contacts", "form": form, "contact": contact}
    return render(request, "portal/contacts/form.html", context, status=status)


@tenant_required
def contact_create(request: HttpRequest) -> HttpResponse:
    form = ContactForm(request.POST or None, tenant=request.tenant)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            contacts.save_contact(request.tenant, phone=data["phone"], name=data["name"],
                                  consent_source=data["consent_source"], consent_at=data["consent_at"],
                                  fields=data["fields_text"], lists=data["lists"])
        except contacts.ContactError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Contact saved."))
            return redirect("contact_list")
    return _contact_form_response(request, form, status=400 if form.is_bound else 200)


@tenant_required
def contact_edit(request: HttpRequest, pk: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=pk)
    initial = {
        "name": contact.name, "phone": contact.phone, "consent_source": contact.consent_source,
        "consent_at": timezone.localtime(contact.consent_at, campaign_zone()).strftime("%Y-%m-%dT%H:%M")
        if contact.consent_at else None,
        "fields_text": "\n".join(f"{k}={v}" for k, v in contact.fields.items()),
        "lists": list(contact.lists.all()),
    }
    form = ContactForm(request.POST or None, tenant=request.tenant, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            contacts.save_contact(request.tenant, phone=data["phone"], name=data["name"],
                                  consent_source=data["consent_source"], consent_at=data["consent_at"],
                                  fields=data["fields_text"], lists=data["lists"], contact=contact)
        except contacts.ContactError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Contact saved."))
            return redirect("contact_list")
    return _contact_form_response(request, form, contact, status=400 if form.is_bound else 200)


@require_POST
@tenant_required
def contact_delete(request: HttpRequest, pk: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=pk)
    contacts.delete_contact(contact)
    messages.success(request, _("Contact deleted."))
    return redirect("contact_list")


@tenant_required
def contact_import(request: HttpRequest) -> HttpResponse:
    """Upload a CSV/XLSX file: good rows imported into a list, bad rows listed with their reasons."""
    form = ImportForm(request.POST or None, request.FILES or None, tenant=request.tenant)
    report = None
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            target, new = form.cleaned_data["contact_list"], False
            try:
                if target is None:
                    target, new = contacts.list_for_import(request.tenant, form.cleaned_data["new_list"],
                                                           form.cleaned_data["file"].name)
            except contacts.ContactError as exc:
                form.add_error("new_list", exc.message)
            else:
                report = contacts.import_contacts(request.tenant, form.cleaned_data["file"], target)
                if report.ok:
                    status = 200
                    messages.success(request, _("%(created)s contact(s) imported into “%(list)s”.")
                                     % {"created": report.created, "list": target.name})
                else:
                    if new and not target.contacts.exists():
                        target.delete()  # made for this file, which was refused: no empty list left
                    form.add_error("file", report.error)
    context = {"section": "campaigns", "tab": "contacts", "form": form, "report": report}
    return render(request, "portal/contacts/import.html", context, status=status)


@tenant_required
def contact_import_sample(request: HttpRequest) -> HttpResponse:
    """A small CSV file with the columns the import recognises and two example contacts."""
    header, *rows = spreadsheets.sample_rows()
    body = "".join(spreadsheets.csv_stream(header, rows, translation.get_language()))
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="contatos-exemplo.csv"'
    return response


@tenant_required
def list_index(request: HttpRequest) -> HttpResponse:
    """Contact lists with their sizes; a form to create one."""
    form = ContactListForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                created = contacts.create_list(request.tenant, form.cleaned_data["name"],
                                               form.cleaned_data["description"])
            except contacts.ContactError as exc:
                form.add_error("name", exc.message)
            else:
                messages.success(request, _("List created."))
                return redirect("contact_list_detail", pk=created.pk)
    lists = ContactList.objects.annotate(
        size=Count("contacts", distinct=True),
        reachable=Count("contacts", distinct=True, filter=Q(contacts__consent_at__isnull=False,
                                                            contacts__unsubscribed_at__isnull=True)),
    )
    context = {"section": "campaigns", "tab": "lists", "form": form, "lists": lists}
    return render(request, "portal/contacts/lists.html", context, status=status)


@tenant_required
def list_detail(request: HttpRequest, pk: int) -> HttpResponse:
    contact_list_ = get_object_or_404(ContactList, pk=pk)
    form = ContactListForm(request.POST or None, initial={"name": contact_list_.name,
                                                          "description": contact_list_.description})
    if request.method == "POST" and form.is_valid():
        name = form.cleaned_data["name"].strip()
        if ContactList.objects.filter(name__iexact=name).exclude(pk=pk).exists():
            form.add_error("name", _("A list named “%(name)s” already exists.") % {"name": name})
        else:
            ContactList.objects.filter(pk=pk).update(name=name, description=form.cleaned_data["description"])
            messages.success(request, _("List saved."))
            return redirect("contact_list_detail", pk=pk)
    page = Paginator(contact_list_.contacts.order_by("name", "phone", "pk"), PAGE_SIZE).get_page(
        request.GET.get("page"))
    context = {"section": "campaigns", "tab": "lists", "list": contact_list_, "form": form, "page": page}
    return render(request, "portal/contacts/list_detail.html", context, status=400 if form.errors else 200)


@require_POST
@tenant_required
def list_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete a list (its contacts stay); lists used by a campaign that is not finished are kept."""
    contact_list_ = get_object_or_404(ContactList, pk=pk)
    if contact_list_.campaigns.exclude(status__in=Campaign.FINAL).exists():
        messages.error(request, _("This list is used by a campaign that has not finished."))
        return redirect("contact_list_detail", pk=pk)
    contact_list_.delete()
    messages.success(request, _("List deleted. Its contacts were kept."))
    return redirect("contact_lists")


@manager_required
def opt_out_settings(request: HttpRequest) -> HttpResponse:
    current = contacts.campaign_settings(request.tenant)
    form = OptOutForm(request.POST or None, initial={"words": current.opt_out_words, "reply": current.opt_out_reply})
    if request.method == "POST" and form.is_valid():
        try:
            contacts.save_opt_out_settings(request.tenant, form.cleaned_data["words"], form.cleaned_data["reply"])
        except contacts.ContactError as exc:
            form.add_error("words", exc.message)
        else:
            messages.success(request, _("Opt-out settings saved."))
            return redirect("opt_out_settings")
    context = {"section": "campaigns", "tab": "opt_out", "form": form,
               "default_reply": contacts.opt_out_reply(request.tenant) if not current.opt_out_reply else "",
               "opted_out": Contact.objects.filter(unsubscribed_at__isnull=False).order_by("-unsubscribed_at")[:50]}
    return render(request, "portal/contacts/opt_out.html", context, status=400 if form.errors else 200)


# --- campaigns ------------------------------------------------------------------------------------


@tenant_required
def campaign_list(request: HttpRequest) -> HttpResponse:
    rows = [(c, campaigns.progress(c)) for c in Campaign.objects.all()[:100]]
    context = {"section": "campaigns", "tab": "campaigns", "rows": rows,
               "has_contacts": Contact.objects.exists(), "has_chips": Chip.objects.exists()}
    return render(request, "portal/campaigns/list.html", context)


def _builder(request: HttpRequest, campaign: Campaign | None) -> HttpResponse:
    limit = campaigns.pace_limit(request.tenant)
    form = CampaignForm(request.POST or None, request.FILES or None, tenant=request.tenant, pace_limit=limit,
                        initial=CampaignForm.initial_for(campaign))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            saved = campaigns.save_campaign(
                request.tenant, name=data["name"], template=data["template"], lists=data["lists"],
                chips=data["chips"], window_days=data["window_days"], window_start=data["window_start"],
                window_end=data["window_end"], pace_per_minute=data["pace_per_minute"], start_at=data["start_at"],
                media=data["media"], remove_media=data["remove_media"], campaign=campaign, user=request.user,
            )
        except campaigns.CampaignError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Campaign saved as a draft. Check it and press Start."))
            return redirect("campaign_detail", pk=saved.pk)
    lists = form["lists"].value() or []
    chosen = ContactList.objects.filter(pk__in=[pk for pk in lists if str(pk).isdigit()])
    context = {
        "section": "campaigns", "tab": "campaigns", "form": form, "campaign": campaign, "pace_limit": limit,
        "preview": campaigns.preview(request.tenant, form["template"].value() or "", chosen),
    }
    return render(request, "portal/campaigns/builder.html", context, status=400 if form.is_bound else 200)


@tenant_required
def campaign_create(request: HttpRequest) -> HttpResponse:
    return _builder(request, None)


@tenant_required
def campaign_edit(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(pk)
    if not campaign.is_editable:
        messages.error(request, _("Only a draft can be changed."))
        return redirect("campaign_detail", pk=pk)
    return _builder(request, campaign)


@require_POST
@tenant_required
def campaign_preview(request: HttpRequest) -> HttpResponse:
    """htmx: the message rendered for a contact of the chosen lists, and template errors."""
    ids = [pk for pk in request.POST.getlist("lists") if pk.isdigit()]
    chosen = ContactList.objects.filter(pk__in=ids)
    result = campaigns.preview(request.tenant, request.POST.get("template", ""), chosen)
    return render(request, "portal/campaigns/_preview.html", {"preview": result})


def _recipient_rows(request: HttpRequest, campaign: Campaign, page_number=None) -> dict:
    """The filtered, paginated recipients table (the detail page, its filters, and the live refresh)."""
    form = RecipientFilterForm(request.GET or None)
    outcome = search = ""
    if form.is_valid():
        outcome, search = form.cleaned_data["outcome"], form.cleaned_data["q"]
    rows = campaigns.recipients(campaign, outcome, search)
    page = Paginator(rows, PAGE_SIZE).get_page(page_number or request.GET.get("page"))
    query = request.GET.copy()
    for key in ("page", "rows"):
        query.pop(key, None)
    return {"filter_form": form, "page": page, "query": query.urlencode(), "labels": RecipientFilterForm.LABELS}


def _detail_context(request: HttpRequest, campaign: Campaign) -> dict:
    return {"section": "campaigns", "tab": "campaigns", "campaign": campaign,
            **_recipient_rows(request, campaign), "progress": campaigns.progress(campaign),
            "poll_seconds": settings.CAMPAIGN_POLL_SECONDS,
            "lists": campaign.lists.all(), "chips": campaign.chips.all(),
            "window_days": ", ".join(str(label) for day, label in WEEKDAYS if day in (campaign.window_days or [])),
            "preview": campaigns.preview(request.tenant, campaign.template, campaign.lists.all())}


@tenant_required
def campaign_detail(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(pk)
    context = _detail_context(request, campaign)
    if request.htmx and request.htmx.target == "recipient-rows":
        return render(request, "portal/campaigns/_recipients.html", context)
    return render(request, "portal/campaigns/detail.html", context)


@contextmanager
def _one_snapshot():
    """The counters and the rows read from one snapshot of the database (PostgreSQL: repeatable read),
    so a row never says Pending while the counters already count it sent."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


@tenant_required
def campaign_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """htmx: the live progress block (keeps polling until the campaign is finished); with `rows` (the page
    of the recipients table shown, and its filters), that table's rows too, out of band, as of the same moment."""
    with _one_snapshot():
        campaign = _campaign(pk)
        context = {"campaign": campaign, "progress": campaigns.progress(campaign),
                   "poll_seconds": settings.CAMPAIGN_POLL_SECONDS}
        if request.GET.get("rows"):
            context.update(_recipient_rows(request, campaign, page_number=request.GET["rows"]), rows_oob=True)
        return render(request, "portal/campaigns/_progress.html", context)


@tenant_required
def campaign_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """The recipients (with the table's filters) as CSV, streamed, in the user's spreadsheet dialect."""
    campaign = _campaign(pk)
    form = RecipientFilterForm(request.GET or None)
    outcome = search = ""
    if form.is_valid():
        outcome, search = form.cleaned_data["outcome"], form.cleaned_data["q"]
    rows = campaigns.recipients(campaign, outcome, search)
    labels = RecipientFilterForm.LABELS
    zone = campaign_zone()
    language = translation.get_language()
    header = [_("name"), _("phone"), _("situation"), _("chip"), _("sent at"), _("delivered at"), _("read at"),
              _("replied at"), _("opted out at"), _("reason")]

    def when(value):
        return timezone.localtime(value, zone).strftime("%Y-%m-%d %H:%M:%S") if value else ""

    def values():
        with translation.override(language):  # streamed after the view returns
            for r in rows.iterator(chunk_size=1000):
                message = r.message
                yield [
                    r.name, r.phone, str(labels.get(r.outcome, r.outcome)), r.chip.alias if r.chip else "",
                    when(r.sent_at), when(message.delivered_at if message else None),
                    when(message.read_at if message else None), when(r.replied_at), when(r.opted_out_at),
                    r.error or (message.error if message else ""),
                ]

    lines = spreadsheets.csv_stream(header, values(), language)
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campanha-{campaign.pk}.csv"'
    return response


@tenant_required
def campaign_report(request: HttpRequest, pk: int) -> HttpResponse:
    """Delivery and read rates over time (Chart.js), per chip, replies and opt-outs."""
    campaign = _campaign(pk)
    series = campaigns.timeline(campaign)
    chart = {
        "labels": [point["label"] for point in series],
        "delivered": [point["delivered_rate"] for point in series],
        "read": [point["read_rate"] for point in series],
        "sent": [point["sent"] for point in series],
        "legend": {"delivered": _("Delivery rate") + " (%)", "read": _("Read rate") + " (%)"},
        # A line needs at least two periods: a campaign sent within one period draws bars.
        "type": "line" if len(series) > 2 else "bar",
    }
    context = {"section": "campaigns", "tab": "campaigns", "campaign": campaign, "series": series, "chart": chart,
               "progress": campaigns.progress(campaign), "per_chip": campaigns.by_chip(campaign)}
    return render(request, "portal/campaigns/report.html", context)


@tenant_required
def chip_report(request: HttpRequest) -> HttpResponse:
    """Campaign messages per chip: daily delivery and read rates, replies, opt-outs."""
    try:
        days = max(1, min(90, int(request.GET.get("dias", 14))))
    except ValueError:
        days = 14
    report = campaigns.chip_report(request.tenant, days)
    keys = report["keys"]
    chart = {"labels": report["labels"], "chips": [], "type": "line" if len(keys) > 2 else "bar"}
    for row in report["chips"]:
        by_key = {point["key"]: point for point in row["series"]}
        chart["chips"].append({
            "name": row["chip"].alias,
            "delivered": [by_key[k]["delivered_rate"] if k in by_key else None for k in keys],
            "read": [by_key[k]["read_rate"] if k in by_key else None for k in keys],
        })
    context = {"section": "campaigns", "tab": "chip_report", "report": report, "chart": chart, "days": days}
    return render(request, "portal/campaigns/chip_report.html", context)


def _action(request: HttpRequest, pk: int, operation, done: str) -> HttpResponse:
    campaign = _campaign(pk)
    try:
        operation(campaign)
    except campaigns.CampaignError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect("campaign_detail", pk=pk)


@require_POST
@tenant_required
def campaign_start(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(pk)
    try:
        campaign = campaigns.start(campaign)
    except campaigns.CampaignError as exc:
        messages.error(request, exc.message)
    else:
        if campaign.status == Campaign.Status.SCHEDULED:
            messages.success(request, _("Campaign scheduled."))
        else:
            messages.success(request, _("Campaign started."))
    return redirect("campaign_detail", pk=pk)


@require_POST
@tenant_required
def campaign_pause(request: HttpRequest, pk: int) -> HttpResponse:
    return _action(request, pk, campaigns.pause, _("Campaign paused."))


@require_POST
@tenant_required
def campaign_resume(request: HttpRequest, pk: int) -> HttpResponse:
    return _action(request, pk, campaigns.resume, _("Campaign resumed."))


@require_POST
@tenant_required
def campaign_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _action(request, pk, campaigns.cancel, _("Campaign canceled."))


@require_POST
@tenant_required
def campaign_unschedule(request: HttpRequest, pk: int) -> HttpResponse:
    return _action(request, pk, campaigns.unschedule, _("Campaign moved back to draft."))


@require_POST
@tenant_required
def campaign_delete(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(pk)
    try:
        campaigns.delete_draft(campaign)
    except campaigns.CampaignError as exc:
        messages.error(request, exc.message)
        return redirect("campaign_detail", pk=pk)
    messages.success(request, _("Campaign deleted."))
    return redirect("campaign_list")
