"""Portal pages of the chips app."""
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

from whago.tenancy import tenant_required

# Sections whose pages the Chips, Campaigns and API issues fill in.
UPCOMING = {
    "chips": _("Connect your WhatsApp numbers by scanning a QR code."),
    "messages": _("Send and receive messages through your chips."),
    "campaigns": _("Campaigns to contacts who gave consent."),
}


@tenant_required
def upcoming(request: HttpRequest, section: str) -> HttpResponse:
    return render(request, "portal/upcoming.html", {"section": section, "summary": UPCOMING[section]})
