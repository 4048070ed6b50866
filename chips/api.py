"""REST API of chips and messages (/api/v1/): thin views over chips.lifecycle, chips.sending and chips.inbox."""
import base64
import binascii

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import limits
from whago.parsers import CleanJSONParser
from whago.rest import HasTenant, api_error

from . import errors, inbox, lifecycle, sending
from .models import Chip, Message

ERROR_STATUS = {
    "invalid": status.HTTP_400_BAD_REQUEST,
    "invalid_phone": status.HTTP_400_BAD_REQUEST,
    "chip_limit": status.HTTP_402_PAYMENT_REQUIRED,
    "quota_exceeded": status.HTTP_402_PAYMENT_REQUIRED,
    "proxy_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "container_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "chip_not_ready": status.HTTP_409_CONFLICT,
    "chip_not_connected": status.HTTP_409_CONFLICT,
    "not_found": status.HTTP_404_NOT_FOUND,
    "conflict": status.HTTP_409_CONFLICT,
}

Error = inline_serializer(
    "Error",
    {
        "error": inline_serializer(
            "ErrorBody",
            {
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(required=False),
            },
        )
    },
)


def _refused(exc: errors.ChipError) -> Response:
    return api_error(exc.message, exc.code, ERROR_STATUS.get(exc.code, status.HTTP_400_BAD_REQUEST))


class PlanIncludesApi(BasePermission):
    """The tenant's plan includes the REST API (billing.limits.has_api_access)."""

    message = gettext_lazy("Your plan does not include the API. Upgrade your plan on the Billing page.")
    code = "plan_without_api"

    def has_permission(self, request, view) -> bool:
        return limits.has_api_access(request.user.tenant)


PERMISSIONS = [HasTenant, PlanIncludesApi]


# --- serializers ----------------------------------------------------------------------


class ChipSerializer(serializers.ModelSerializer):
    suspended = serializers.SerializerMethodField(help_text="Stopped because the plan allows fewer chips.")
    qr_url = serializers.SerializerMethodField(help_text="PNG of the QR code while status is SCAN_QR_CODE.")
    last_error = serializers.CharField(source="error_text", read_only=True,
                                       help_text="What went wrong, in the request's language (Accept-Language).")

    class Meta:
        model = Chip
        fields = [
            "id", "alias", "status", "phone", "push_name", "last_error", "suspended", "qr_url",
            "created_at", "status_changed_at", "connected_at",
        ]
        read_only_fields = fields

    def get_suspended(self, chip: Chip) -> bool:
        return chip.suspended_at is not None

    def get_qr_url(self, chip: Chip) -> str | None:
        if not chip.can(Chip.Action.PAIR):
            return None
        request = self.context.get("request")
        path = f"/api/v1/chips/{chip.pk}/qr.png"
        return request.build_absolute_uri(path) if request else path


class ChipCreateSerializer(serializers.Serializer):
    alias = serializers.CharField(max_length=80, help_text="A name for the number, e.g. Sales.")


class ConnectSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=["qr", "code"], default="qr",
                                     help_text="qr: start the session and scan /qr; code: get a pairing code.")
    phone_number = serializers.CharField(required=False, max_length=40,
                                         help_text="The WhatsApp number to link (method=code).")

    def validate(self, attrs):
        if attrs.get("method") == "code" and not attrs.get("phone_number"):
            raise serializers.ValidationError({"phone_number": [_("Enter the phone number to link.")]})
        return attrs


class ConnectResponseSerializer(serializers.Serializer):
    chip = ChipSerializer()
    code = serializers.CharField(required=False, allow_null=True, help_text="The pairing code (method=code).")


class QrSerializer(serializers.Serializer):
    mimetype = serializers.CharField()
    data_uri = serializers.CharField(help_text="data:image/png;base64,...")


class MediaSerializer(serializers.Serializer):
    data = serializers.CharField(help_text="The file, base64-encoded.")
    filename = serializers.CharField(max_length=200, required=False)
    mimetype = serializers.CharField(max_length=100, required=False)

    def validate_data(self, value: str) -> bytes:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError(_("Not valid base64."))


class MessageSerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="kind")

    class Meta:
        model = Message
        fields = [
            "id", "chip", "direction", "peer", "peer_name", "type", "body", "media_name", "media_mimetype",
            "status", "error", "waha_id", "idempotency_key", "source", "attempts",
            "created_at", "sent_at", "delivered_at", "read_at", "failed_at",
        ]
        read_only_fields = fields


class SendSerializer(serializers.Serializer):
    chip = serializers.IntegerField(help_text="Id of a connected chip.")
    to = serializers.CharField(max_length=40, help_text="Phone number: +55 11 98765-4321, (11) 8765-4321...")
    type = serializers.ChoiceField(choices=Message.Kind.values, default=Message.Kind.TEXT)
    text = serializers.CharField(required=False, allow_blank=True, max_length=4096,
                                 help_text="The text, or the caption of an image/document.")
    media = MediaSerializer(required=False, help_text="JSON body: the image/document as base64.")
    file = serializers.FileField(required=False, help_text="multipart/form-data: the image/document.")
    idempotency_key = serializers.CharField(required=False, max_length=100,
                                            help_text="Or the Idempotency-Key header: the same key never sends twice.")


# --- chips ------------------------------------------------------------------------------


def _chip(pk: int) -> Chip:
    return get_object_or_404(Chip.objects.select_related("waha_session", "proxy_assignment"), pk=pk)


class ChipList(GenericAPIView):
    """The tenant's chips."""

    permission_classes = PERMISSIONS
    serializer_class = ChipSerializer

    def get_queryset(self):
        return Chip.objects.all()

    @extend_schema(operation_id="chips_list", responses=ChipSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ChipSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(
        operation_id="chips_create",
        request=ChipCreateSerializer,
        responses={201: ChipSerializer, 400: Error, 402: OpenApiResponse(Error, description="Plan limit reached")},
    )
    def post(self, request):
        data = ChipCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            chip = lifecycle.create_chip(request.user.tenant, data.validated_data["alias"])
        except errors.ChipError as exc:
            return _refused(exc)
        return Response(ChipSerializer(chip, context={"request": request}).data, status=status.HTTP_201_CREATED)


class ChipDetail(APIView):
    """One chip: read, rename, delete (messages are kept)."""

    permission_classes = PERMISSIONS

    @extend_schema(operation_id="chips_retrieve", responses={200: ChipSerializer, 404: Error})
    def get(self, request, pk: int):
        return Response(ChipSerializer(_chip(pk), context={"request": request}).data)

    @extend_schema(operation_id="chips_rename", request=ChipCreateSerializer,
                   responses={200: ChipSerializer, 404: Error})
    def patch(self, request, pk: int):
        chip = _chip(pk)
        data = ChipCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            lifecycle.rename(chip, data.validated_data["alias"])
        except errors.ChipError as exc:
            return _refused(exc)
        return Response(ChipSerializer(chip, context={"request": request}).data)

    @extend_schema(operation_id="chips_destroy", responses={204: None, 404: Error})
    def delete(self, request, pk: int):
        lifecycle.delete_chip(_chip(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChipQrPng(APIView):
    """The pairing QR code as a PNG image (while the chip's status is SCAN_QR_CODE)."""

    permission_classes = PERMISSIONS

    @extend_schema(
        operation_id="chips_qr_png",
        responses={(200, "image/png"): OpenApiTypes.BINARY, 404: Error, 409: Error, 503: Error},
    )
    def get(self, request, pk: int):
        try:
            png = lifecycle.qr_png(_chip(pk))
        except errors.ChipError as exc:
            return _refused(exc)
        response = HttpResponse(png, content_type="image/png")
        response["Cache-Control"] = "no-store"
        return response


class ChipQr(APIView):
    """The pairing QR code as a base64 data URI (to put in an <img src>)."""

    permission_classes = PERMISSIONS

    @extend_schema(operation_id="chips_qr", responses={200: QrSerializer, 404: Error, 409: Error, 503: Error})
    def get(self, request, pk: int):
        try:
            png = lifecycle.qr_png(_chip(pk))
        except errors.ChipError as exc:
            return _refused(exc)
        uri = "data:image/png;base64," + base64.b64encode(png).decode()
        return Response({"mimetype": "image/png", "data_uri": uri}, headers={"Cache-Control": "no-store"})


class ChipConnect(APIView):
    """Start linking: the session shows a QR code (method=qr) or gives a pairing code (method=code)."""

    permission_classes = PERMISSIONS

    @extend_schema(
        operation_id="chips_connect",
        request=ConnectSerializer,
        responses={200: ConnectResponseSerializer, 400: Error, 402: Error, 404: Error, 409: Error, 503: Error},
    )
    def post(self, request, pk: int):
        chip = _chip(pk)
        data = ConnectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        code = None
        try:
            if data.validated_data["method"] == "code":
                code = lifecycle.request_pairing_code(chip, data.validated_data["phone_number"])
            else:
                chip = lifecycle.connect(chip)
        except errors.ChipError as exc:
            return _refused(exc)
        return Response({"chip": ChipSerializer(chip, context={"request": request}).data, "code": code})


class ChipDisconnect(APIView):
    """Log the number out of WhatsApp (status DISCONNECTED); connect links a number again."""

    permission_classes = PERMISSIONS

    @extend_schema(operation_id="chips_disconnect", request=None,
                   responses={200: ChipSerializer, 404: Error, 503: Error})
    def post(self, request, pk: int):
        try:
            chip = lifecycle.disconnect(_chip(pk))
        except errors.ChipError as exc:
            return _refused(exc)
        return Response(ChipSerializer(chip, context={"request": request}).data)


class ChipRestart(APIView):
    """Restart the chip's session (a linked number reconnects by itself)."""

    permission_classes = PERMISSIONS

    @extend_schema(operation_id="chips_restart", request=None,
                   responses={200: ChipSerializer, 402: Error, 404: Error, 409: Error, 503: Error})
    def post(self, request, pk: int):
        try:
            chip = lifecycle.restart(_chip(pk))
        except errors.ChipError as exc:
            return _refused(exc)
        return Response(ChipSerializer(chip, context={"request": request}).data)


# --- messages ---------------------------------------------------------------------------

FILTERS = [
    OpenApiParameter("chip", int, description="Only this chip's messages."),
    OpenApiParameter("status", str, enum=Message.Status.values),
    OpenApiParameter("direction", str, enum=Message.Direction.values),
    OpenApiParameter("peer", str, description="Phone number (any format) or part of its digits."),
    OpenApiParameter("since", OpenApiTypes.DATE, description="Created on or after this day (YYYY-MM-DD)."),
    OpenApiParameter("until", OpenApiTypes.DATE, description="Created on or before this day (YYYY-MM-DD)."),
]


class MessageFilters(serializers.Serializer):
    chip = serializers.IntegerField(required=False)
    status = serializers.ChoiceField(choices=Message.Status.values, required=False)
    direction = serializers.ChoiceField(choices=Message.Direction.values, required=False)
    peer = serializers.CharField(required=False, max_length=40)
    since = serializers.DateField(required=False)
    until = serializers.DateField(required=False)


class MessageList(GenericAPIView):
    """Messages sent and received, newest first; send one."""

    permission_classes = PERMISSIONS
    serializer_class = MessageSerializer
    parser_classes = [CleanJSONParser, MultiPartParser, FormParser]

    def get_queryset(self):
        return Message.objects.all()

    @extend_schema(operation_id="messages_list", parameters=FILTERS, responses={200: MessageSerializer(many=True),
                                                                               400: Error})
    def get(self, request):
        filters = MessageFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = inbox.filter_messages(self.get_queryset(), **filters.validated_data)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(MessageSerializer(page, many=True).data)

    @extend_schema(
        operation_id="messages_send",
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                                     description="Sending again with the same key returns the first message.")],
        request={"application/json": SendSerializer, "multipart/form-data": SendSerializer},
        responses={
            201: MessageSerializer,
            200: OpenApiResponse(MessageSerializer, description="Already queued with this idempotency key"),
            400: Error, 402: OpenApiResponse(Error, description="Message quota exceeded"), 409: Error,
        },
        examples=[
            OpenApiExample("Text", value={"chip": 1, "to": "(11) 98765-4321", "text": "Olá!"}, request_only=True),
            OpenApiExample(
                "Image",
                value={"chip": 1, "to": "+5511987654321", "type": "image", "text": "Legenda",
                       "media": {"filename": "foto.jpg", "data": "<base64>"}},
                request_only=True,
            ),
        ],
    )
    def post(self, request):
        data = SendSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        chip = Chip.objects.filter(pk=values["chip"]).first()
        if chip is None:
            return api_error(_("No chip with this id."), "not_found", status.HTTP_404_NOT_FOUND)
        file, filename, mimetype = values.get("file"), None, None
        if file is None and values.get("media"):
            media = values["media"]
            file, filename, mimetype = media["data"], media.get("filename"), media.get("mimetype")
        try:
            message, created = sending.send_message(
                request.user.tenant, chip, values["to"], kind=values["type"], text=values.get("text", ""),
                file=file, filename=filename, mimetype=mimetype,
                idempotency_key=request.headers.get("Idempotency-Key") or values.get("idempotency_key"),
                source="api",
            )
        except errors.ChipError as exc:
            return _refused(exc)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(MessageSerializer(message).data, status=code)


class BatchItemSerializer(serializers.Serializer):
    chip = serializers.IntegerField()
    to = serializers.CharField(max_length=40)
    text = serializers.CharField(max_length=4096)
    idempotency_key = serializers.CharField(required=False, max_length=100)


class BatchSerializer(serializers.Serializer):
    messages = BatchItemSerializer(many=True, help_text="Up to 1,000 text messages.")


class BatchResultSerializer(serializers.Serializer):
    created = serializers.IntegerField(help_text="Messages queued by this request (the others existed).")
    messages = MessageSerializer(many=True)


class MessageBatch(APIView):
    """Queue many text messages in one request: all of them, or none when one is invalid."""

    permission_classes = PERMISSIONS

    @extend_schema(
        operation_id="messages_send_batch",
        request=BatchSerializer,
        responses={201: BatchResultSerializer, 400: Error, 402: OpenApiResponse(Error, description="Quota exceeded")},
    )
    def post(self, request):
        data = BatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            results = sending.send_messages(request.user.tenant, data.validated_data["messages"], source="api")
        except errors.BatchRefused as exc:
            return Response({"error": {"code": exc.code, "message": exc.message,
                                       "fields": {"messages": {str(k): [v] for k, v in exc.errors.items()}}}},
                            status=status.HTTP_400_BAD_REQUEST)
        except errors.ChipError as exc:
            return _refused(exc)
        body = {"created": sum(created for _message, created in results),
                "messages": MessageSerializer([message for message, _created in results], many=True).data}
        return Response(body, status=status.HTTP_201_CREATED)


class MessageDetail(APIView):
    """One message."""

    permission_classes = PERMISSIONS

    @extend_schema(operation_id="messages_retrieve", responses={200: MessageSerializer, 404: Error})
    def get(self, request, pk: int):
        return Response(MessageSerializer(get_object_or_404(Message, pk=pk)).data)
