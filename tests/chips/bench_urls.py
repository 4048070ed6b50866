"""URLs of the webhook benchmark: WHAGO's own, plus a bare view."""
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def bare(request):
    """The least a view can do: read nothing, answer 200."""
    return HttpResponse(b'{"status": "ok"}', content_type="application/json")


urlpatterns = [
    path("bench/bare", bare),
    path("", include("whago.urls")),
]
