"""Template tags of the chips app: the dashboard's summary of chips and messages."""
from django import template
from django.db.models import Count, Q
from django.utils import timezone

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
