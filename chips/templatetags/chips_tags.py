"""Template tags of the chips app: the dashboard's summary of chips and messages, the menu's unread count."""
from django import template
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import ngettext

from .. import inbox
from ..models import Chip, Message

register = template.Library()


@register.inclusion_tag("portal/chips/_summary.html", takes_context=True)
def chips_summary(context) -> dict:
    """Chips by status and today's messages of the current tenant (queries run in its scope)."""
    request = context["request"]
    if getattr(request, "tenant", None) is None:
        return {"tenant": None}
    chips = Chip.objects.aggregate(total=Count("id"), working=Count("id", filter=Q(status=Chip.Status.WORKING)),
                                   waiting=Count("id", filter=Q(status__in=Chip.TRANSIENT)),
                                   failed=Count("id", filter=Q(status=Chip.Status.FAILED)))
    since = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    messages = Message.objects.filter(created_at__gte=since).aggregate(
        sent=Count("id", filter=Q(direction=Message.Direction.OUT)),
        received=Count("id", filter=Q(direction=Message.Direction.IN)),
        failed=Count("id", filter=Q(status=Message.Status.FAILED)),
    )
    return {"tenant": request.tenant, "chips": chips, "messages": messages}


@register.simple_tag(takes_context=True)
def unread_badge(context) -> str:
    """The number of received messages not opened in the inbox yet, as a badge ("" when none)."""
    tenant = getattr(context.get("request"), "tenant", None)
    count = inbox.unread_count(tenant) if tenant is not None else 0
    if not count:
        return ""
    return format_html(' <span class="nav-count" id="unread-total" title="{}">{}</span>',
                       ngettext("%(n)s unread message", "%(n)s unread messages", count) % {"n": count}, count)
