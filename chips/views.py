"""Portal pages of the chips app."""
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as gettext_now
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from whago.tenancy import manager_required, tenant_required

from . import outgoing
from .forms import WebhookForm
from .models import TenantWebhook, WebhookDelivery

# Sections whose pages the Chips, Campaigns and API issues fill in.
UPCOMING = {
    "chips": _("Connect your WhatsApp numbers by scanning a QR code."),
    "messages": _("Send and receive messages through your chips."),
    "campaigns": _("Campaigns to contacts who gave consent."),
}


@tenant_required
def upcoming(request: HttpRequest, section: str) -> HttpResponse:
    return render(request, "portal/upcoming.html", {"section": section, "summary": UPCOMING[section]})


@manager_required
def webhook_settings(request: HttpRequest) -> HttpResponse:
    """The tenant's outgoing webhook: URL, signing secret, test event, delivery log."""
    webhook = TenantWebhook.objects.first()
    initial = {"url": webhook.url, "is_active": webhook.is_active} if webhook else {"is_active": True}
    form = WebhookForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        outgoing.set_webhook(request.tenant, form.cleaned_data["url"], form.cleaned_data["is_active"])
        messages.success(request, gettext_now("Webhook saved."))
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
        messages.error(request, gettext_now("Set an active webhook URL first."))
    else:
        messages.success(request, gettext_now("Test event queued: see the delivery log below."))
    return redirect("webhook_settings")


@require_POST
@manager_required
def webhook_rotate(request: HttpRequest) -> HttpResponse:
    webhook = TenantWebhook.objects.first()
    if webhook is not None:
        outgoing.rotate_secret(webhook)
        messages.success(request, gettext_now("New signing secret created: update your receiver."))
    return redirect("webhook_settings")
