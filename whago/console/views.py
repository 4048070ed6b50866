"""The public front page: what WHAGO is and the plans on sale (billing's)."""
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from billing.models import Plan


def landing(request: HttpRequest) -> HttpResponse:
    plans = Plan.objects.filter(is_public=True)
    return render(request, "landing.html", {"plans": plans})
