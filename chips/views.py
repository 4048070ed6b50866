"""Portal pages of the chips app: chips, their QR code and status, messages, conversations."""
import time

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from billing import limits
from proxies import services as proxy_services
from whago.tenancy import manager_required, tenant_required

from . import errors, lifecycle, outgoing, sending
from .forms import ChipForm, MessageFilterForm, PairingCodeForm, SendMessageForm, WebhookForm
from .inbox import conversations, filter_messages, mark_read, peer_name
from .models import Chip, Message, TenantWebhook, WebhookDelivery
from .phones import normalize_phone


@manager_required
def webhook_settings(request: HttpRequest) -> HttpResponse:
    """The tenant's outgoing webhook: URL, signing secret, test event, delivery log."""
    webhook = TenantWebhook.objects.first()
    initial = {"url": webhook.url, "is_active": webhook.is_active} if webhook else {"is_active": True}
    form = WebhookForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        outgoing.set_webhook(request.tenant, form.cleaned_data["url"], form.cleaned_data["is_active"])
        messages.success(request, gettext("Webhook saved."))
        return redirect("webhook_settings")
    context = {
        "section": "api",
        "form": form,
        "webhook": webhook,
        "deliveries": WebhookDelivery.objects.all()[:50],
    }
    return render(request, "portal/webhook.html", context)


@require_POST
@manager_required
def webhook_test(request: HttpRequest) -> HttpResponse:
    if outgoing.emit(request.tenant.pk, "ping", {"message": "WHAGO test event"}) is None:
        messages.error(request, gettext("Set an active webhook URL first."))
    else:
        messages.success(request, gettext("Test event queued: see the delivery log below."))
    return redirect("webhook_settings")


@require_POST
@manager_required
def webhook_rotate(request: HttpRequest) -> HttpResponse:
    webhook = TenantWebhook.objects.first()
    if webhook is not None:
        outgoing.rotate_secret(webhook)
        messages.success(request, gettext("New signing secret created: update your receiver."))
    return redirect("webhook_settings")


# --- chips ------------------------------------------------------------------------------


def _chip(pk: int) -> Chip:
    """One of the current tenant's chips (the scope hides other tenants' and deleted ones)."""
    return get_object_or_404(Chip.objects.select_related("waha_session__container", "proxy_assignment"), pk=pk)


def _plan_context(request: HttpRequest) -> dict:
    in_use = lifecycle.chips_in_use(request.tenant)
    limit = limits.chip_limit(request.tenant)
    return {"chips_in_use": in_use, "chip_limit": limit, "limit_reached": in_use >= limit}


@tenant_required
def chip_list(request: HttpRequest) -> HttpResponse:
    """The tenant's chips with live status (the table refreshes itself through htmx)."""
    context = {"section": "chips", "chips": Chip.objects.all(), "poll_seconds": settings.CHIPS_POLL_SECONDS}
    if request.htmx:
        return render(request, "portal/chips/_rows.html", context)
    context.update(_plan_context(request), form=ChipForm())
    return render(request, "portal/chips/list.html", context)


@require_POST
@manager_required
def chip_create(request: HttpRequest) -> HttpResponse:
    form = ChipForm(request.POST)
    if form.is_valid():
        try:
            chip = lifecycle.create_chip(request.tenant, form.cleaned_data["alias"])
        except errors.ChipError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, gettext("Chip created: scan the QR code with WhatsApp to connect it."))
            return redirect("chip_detail", pk=chip.pk)
    context = {"section": "chips", "chips": Chip.objects.all(), "form": form,
               "poll_seconds": settings.CHIPS_POLL_SECONDS, **_plan_context(request)}
    return render(request, "portal/chips/list.html", context, status=400)


def _live_context(request: HttpRequest, chip: Chip) -> dict:
    session = chip.waha_session
    container = session.container if session else None
    container_down = bool(container and (not container.healthy and container.down_since))
    return {
        "chip": chip,
        "container_down": container_down,
        "provisioning_trouble": chip.status == Chip.Status.PROVISIONING and bool(chip.last_error),
        # A connected chip polls as often as a connecting one: a failure shows within CHIPS_POLL_SECONDS.
        "poll_seconds": settings.CHIPS_POLL_SECONDS,
        "qr_stamp": int(time.time()),
        "can_manage": request.membership.can_manage,
    }


def _detail_page(request: HttpRequest, chip: Chip, rename_form: ChipForm | None = None,
                 status: int = 200) -> HttpResponse:
    context = {
        "section": "chips",
        **_live_context(request, chip),
        "pairing_form": PairingCodeForm(),
        "rename_form": rename_form or ChipForm(initial={"alias": chip.alias}, auto_id="rename_%s"),
        "egress": proxy_services.egress_summary(chip.proxy_assignment),
        "recent": Message.objects.filter(chip=chip)[:10],
    }
    return render(request, "portal/chips/detail.html", context, status=status)


@tenant_required
def chip_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A chip: QR code until it is connected, then its number; actions and next steps."""
    return _detail_page(request, _chip(pk))


@never_cache
@tenant_required
def chip_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The live part of the chip page (htmx polling); swaps the pairing section when the status changed."""
    chip = _chip(pk)
    context = _live_context(request, chip)
    context["status_changed"] = request.GET.get("shown") != chip.status
    context["pairing_form"] = PairingCodeForm()
    return render(request, "portal/chips/_live.html", context)


@never_cache
@tenant_required
def chip_qr(request: HttpRequest, pk: int) -> HttpResponse:
    """The QR code image, fetched by the server from the chip's container (browsers never reach it)."""
    chip = _chip(pk)
    try:
        png = lifecycle.qr_png(chip)
    except errors.ChipError as exc:
        return HttpResponse(exc.message, status=409, content_type="text/plain; charset=utf-8")
    return HttpResponse(png, content_type="image/png")


@require_POST
@tenant_required
def chip_pairing_code(request: HttpRequest, pk: int) -> HttpResponse:
    chip = _chip(pk)
    form = PairingCodeForm(request.POST)
    code = None
    if form.is_valid():
        try:
            code = lifecycle.request_pairing_code(chip, form.cleaned_data["phone"])
        except errors.ChipError as exc:
            form.add_error("phone", exc.message)
    context = {"chip": chip, "pairing_form": form, "code": code}
    if request.htmx:
        return render(request, "portal/chips/_pairing.html", context)
    if code:
        messages.success(request, gettext("Your pairing code: %(code)s") % {"code": code})
    else:
        for error in form.errors.get("phone", []):
            messages.error(request, error)
    return redirect("chip_detail", pk=chip.pk)


def _chip_action(request: HttpRequest, pk: int, action, done: str) -> HttpResponse:
    chip = _chip(pk)
    try:
        action(chip)
    except errors.ChipError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect("chip_detail", pk=chip.pk)


@require_POST
@tenant_required
def chip_connect(request: HttpRequest, pk: int) -> HttpResponse:
    return _chip_action(request, pk, lifecycle.connect, gettext("Connecting: scan the QR code when it appears."))


@require_POST
@tenant_required
def chip_restart(request: HttpRequest, pk: int) -> HttpResponse:
    return _chip_action(request, pk, lifecycle.restart, gettext("The chip is restarting."))


@require_POST
@manager_required
def chip_disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    return _chip_action(request, pk, lifecycle.disconnect,
                        gettext("The number was logged out. Connect again to link a number."))


@require_POST
@manager_required
def chip_rename(request: HttpRequest, pk: int) -> HttpResponse:
    form = ChipForm(request.POST, auto_id="rename_%s")
    if not form.is_valid():  # the page again, the error under the name field (too long, empty…)
        return _detail_page(request, _chip(pk), rename_form=form, status=400)
    return _chip_action(request, pk, lambda chip: lifecycle.rename(chip, form.cleaned_data["alias"]),
                        gettext("Chip renamed."))


@manager_required
def chip_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm, then delete: the number is logged out, its messages are kept."""
    chip = _chip(pk)
    if request.method == "POST":
        lifecycle.delete_chip(chip)
        messages.success(request, gettext("Chip %(name)s deleted. Its messages were kept.") % {"name": chip.alias})
        return redirect("chip_list")
    return render(request, "portal/chips/delete.html", {"section": "chips", "chip": chip})


def _inbox_page(request: HttpRequest, chip: Chip | None) -> HttpResponse:
    """The conversations of every chip (or of `chip`), the most recent first, with their unread counts."""
    chips = Chip.objects.all()
    page = conversations(request.tenant, chip=chip, page=request.GET.get("page"))
    query = f"chip={chip.pk}" if chip else ""
    context = {"section": "inbox", "chip": chip, "page": page, "query": query,
               "poll_url": f"{reverse('inbox')}?{query}&page={page.number}",
               "poll_seconds": settings.CHIPS_POLL_SECONDS * 2}
    if request.htmx:
        return render(request, "portal/messages/_conversations.html", context)
    context["chips"] = chips
    return render(request, "portal/messages/inbox.html", context)


@tenant_required
def inbox(request: HttpRequest) -> HttpResponse:
    """One inbox for all the chips: ?chip= narrows it to one chip."""
    chip = None
    if request.GET.get("chip"):
        try:
            chip = Chip.objects.filter(pk=int(request.GET["chip"])).first()
        except ValueError:
            chip = None
        if chip is None:
            return redirect("inbox")
    return _inbox_page(request, chip)


@tenant_required
def chip_inbox(request: HttpRequest, pk: int) -> HttpResponse:
    """The chip's conversations (the former per-chip inbox): the inbox narrowed to the chip."""
    return _inbox_page(request, _chip(pk))


def _queue_from_form(request: HttpRequest, form: SendMessageForm) -> Message | None:
    """Queue the message of a valid send form through the one send path; errors go onto the form."""
    if not form.is_valid():
        return None
    data = form.cleaned_data
    try:
        message, _created = sending.send_message(
            request.tenant, data["chip"], data["to"], kind=data["kind"], text=data["text"], file=data["file"],
            source="portal",
        )
    except errors.SendRefused as exc:
        field = {"invalid_phone": "to", "chip_not_connected": "chip"}.get(exc.code)
        form.add_error(field, exc.message)
        return None
    messages.success(request, gettext("Message to %(peer)s queued.") % {"peer": message.display_peer})
    return message


@tenant_required
def conversation(request: HttpRequest, pk: int, peer: str) -> HttpResponse:
    """One conversation of a chip, oldest first, opened (its received messages are read), with a reply form."""
    chip = _chip(pk)
    try:
        number = normalize_phone("+" + peer.lstrip("+"))
    except ValidationError:
        raise Http404
    url = reverse("conversation", args=[chip.pk, number[1:]])
    form = None
    if request.method == "POST":
        data = request.POST.copy()
        data["chip"], data["to"] = chip.pk, number  # the thread's chip and number, whatever was posted
        form = SendMessageForm(data, request.FILES, chips=Chip.objects.filter(pk=chip.pk))
        if _queue_from_form(request, form):
            return redirect(url)
    thread = list(Message.objects.filter(chip=chip, peer=number).order_by("-created_at", "-pk")[:200])[::-1]
    if not thread:
        raise Http404
    mark_read(chip, number)
    name, contact_pk = peer_name(request.tenant, number)
    context = {"section": "inbox", "chip": chip, "peer": number, "thread": thread, "url": url,
               "poll_seconds": settings.CHIPS_POLL_SECONDS, "name": name, "contact_pk": contact_pk}
    if request.htmx:
        return render(request, "portal/messages/_thread.html", context)
    context["form"] = form or SendMessageForm(
        chips=Chip.objects.filter(pk=chip.pk), initial={"chip": chip, "to": number, "kind": Message.Kind.TEXT}
    )
    return render(request, "portal/messages/conversation.html", context, status=400 if form else 200)


# --- messages ---------------------------------------------------------------------------


def _message_filters(request: HttpRequest) -> tuple[MessageFilterForm, object]:
    chips = Chip.all_objects.all()
    form = MessageFilterForm(request.GET or None, chips=chips)
    queryset = Message.objects.select_related("chip")
    if form.is_valid():
        queryset = filter_messages(queryset, **form.cleaned_data)
    return form, queryset


@tenant_required
def message_list(request: HttpRequest) -> HttpResponse:
    """Every message with filters, live statuses, and the form to send one."""
    filter_form, queryset = _message_filters(request)
    page = Paginator(queryset, 50).get_page(request.GET.get("page"))
    context = {"section": "messages", "page": page, "filter_form": filter_form,
               "poll_seconds": settings.CHIPS_POLL_SECONDS, "query": request.GET.urlencode()}
    if request.htmx:
        return render(request, "portal/messages/_rows.html", context)
    working = Chip.objects.filter(status__in=Chip.statuses_allowing(Chip.Action.SEND))
    context["form"] = SendMessageForm(chips=working, initial={"chip": request.GET.get("chip") or None})
    context["chips"] = Chip.objects.all()
    context["quota"] = limits.remaining_quota(request.tenant)
    return render(request, "portal/messages/list.html", context)


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return fallback


@require_POST
@tenant_required
def message_send(request: HttpRequest) -> HttpResponse:
    """Queue a text, image or document to a phone number through a chip."""
    form = SendMessageForm(request.POST, request.FILES, chips=Chip.objects.all())
    if _queue_from_form(request, form):
        return redirect(_safe_next(request, reverse("message_list")))
    filter_form, queryset = _message_filters(request)
    context = {
        "section": "messages", "form": form, "filter_form": filter_form,
        "page": Paginator(queryset, 50).get_page(1), "chips": Chip.objects.all(),
        "poll_seconds": settings.CHIPS_POLL_SECONDS, "quota": limits.remaining_quota(request.tenant),
    }
    form.fields["chip"].queryset = Chip.objects.filter(status__in=Chip.statuses_allowing(Chip.Action.SEND))
    return render(request, "portal/messages/list.html", context, status=400)


@tenant_required
def message_detail(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(Message.objects.select_related("chip"), pk=pk)
    template = "portal/messages/_detail_status.html" if request.htmx else "portal/messages/detail.html"
    return render(request, template, {"section": "messages", "message": message,
                                      "poll_seconds": settings.CHIPS_POLL_SECONDS})


@tenant_required
def message_media(request: HttpRequest, pk: int) -> HttpResponse:
    """The file of a message, to members of its tenant only (media is never public)."""
    message = get_object_or_404(Message, pk=pk)
    if not message.media:
        raise Http404
    # Images, audio and video play in the page (the inbox shows them inline); documents are downloaded.
    inline = message.kind == Message.Kind.IMAGE or message.media_mimetype.startswith(("audio/", "video/"))
    return FileResponse(message.media.open("rb"), as_attachment=not inline,
                        filename=message.media_name or None, content_type=message.media_mimetype or None)
