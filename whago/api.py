"""API views of the whago app."""
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView


class Me(APIView):
    """The tenant a key belongs to: a first call to check an integration."""

    @extend_schema(responses=inline_serializer("Me", {"tenant": serializers.CharField(),
                                                      "key": serializers.CharField()}))
    def get(self, request):
        return Response({"tenant": request.user.tenant.name, "key": request.user.key.prefix})
