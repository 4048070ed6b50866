"""Billing pages: the public pricing page and the tenant's Cobrança page."""
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from whago.tenancy import tenant_required

from .models import Plan, Subscription


def pricing(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/pricing.html", {"plans": Plan.objects.filter(is_public=True)})


@tenant_required
def billing_home(request: HttpRequest) -> HttpResponse:
    subscription = Subscription.objects.select_related("plan").first()
    context = {"section": "billing", "subscription": subscription, "plans": Plan.objects.filter(is_public=True)}
    return render(request, "billing/home.html", context)
