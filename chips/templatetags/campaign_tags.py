"""Template tags of the campaigns: the summary block of the Painel."""
from django import template

from chips import campaigns

register = template.Library()


@register.inclusion_tag("portal/campaigns/_dashboard.html", takes_context=True)
def campaign_summary(context) -> dict:
    """Active campaigns with their progress and the last 7 days' rates of the current tenant."""
    tenant = context.get("current_tenant") or getattr(context.get("request"), "tenant", None)
    return {"summary": campaigns.dashboard_summary(tenant) if tenant else None}
