"""Billing pages (public pricing, the tenant's Cobrança page) and the gateways' webhook receiver."""
import logging

from csp.decorators import csp_update
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from whago.tenancy import manager_required, tenant_required

from . import gateways, limits, services
from .forms import CheckoutForm
from .gateways.base import GatewayError, WebhookRejected
from .models import GatewayEvent, Payment, Plan

log = logging.getLogger(__name__)
MAX_WEBHOOK_BYTES = 512 * 1024
# When the provider we must ask is unreachable: the gateway retries the webhook (and may wait longer).
WEBHOOK_RETRY_AFTER_SECONDS = 120
# How often a pending payment's page asks whether it was paid (billing_payment_status).
PAYMENT_POLL_SECONDS = 3
# Pages whose forms start a checkout: the browser follows its redirect to the gateway's page, which the
# Content-Security-Policy's form-action must allow (settings.CSP_CHECKOUT_FORM_ACTION).
checkout_forms = csp_update({"form-action": settings.CSP_CHECKOUT_FORM_ACTION})


def pricing(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/pricing.html", {"plans": Plan.objects.filter(is_public=True)})


@checkout_forms
@tenant_required
def billing_home(request: HttpRequest) -> HttpResponse:
    subscription = services.subscription_of(request.tenant)
    plan = limits.current_plan(request.tenant)
    plans = list(Plan.objects.filter(is_public=True))
    for option in plans:
        option.is_current = option.pk == plan.pk
        option.is_downgrade = option.max_chips < plan.max_chips
        option.warning = services.downgrade_warning(request.tenant, option) if option.is_downgrade else ""
    configured = gateways.configured_gateways()
    context = {
        "section": "billing",
        "subscription": subscription,
        "plan": plan,
        "plans": plans,
        "quota": limits.remaining_quota(request.tenant),
        "usage": services.current_usage(request.tenant),
        "packs": services.credit_packs(),
        "gateways": configured,
        "pix_gateways": [g for g in configured if g.supports_pix],
        "payments": Payment.objects.select_related("plan").order_by("-created_at")[:30],
        "can_manage": request.membership.can_manage,
    }
    return render(request, "billing/home.html", context)


@require_POST
@manager_required
def checkout(request: HttpRequest) -> HttpResponse:
    form = CheckoutForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect("billing")
    data = form.cleaned_data
    try:
        payment = services.start_checkout(
            request.tenant, request.user, gateway=data["gateway"], plan=data["plan"], credits=data["credits"],
            method=data["method"],
        )
    except services.CheckoutFailed as exc:
        # The payment's page explains what happened, plainly, with "Try again".
        return redirect("billing_payment", reference=exc.payment.reference)
    except services.BillingError as exc:
        messages.error(request, str(exc))
        return redirect("billing")
    if payment.pix_qr_code or not payment.checkout_url:
        return redirect("billing_payment", reference=payment.reference)
    return redirect(payment.checkout_url)


@require_POST
@manager_required
def downgrade(request: HttpRequest) -> HttpResponse:
    try:
        services.downgrade_to_free(request.tenant)
    except services.BillingError as exc:
        messages.error(request, str(exc))
    else:
        free = Plan.objects.get(code=Plan.FREE)
        messages.warning(
            request, _("You are now on the free plan. %(warning)s")
            % {"warning": services.downgrade_warning(request.tenant, free)},
        )
    return redirect("billing")


def _payment_context(request: HttpRequest, payment: Payment) -> dict:
    context = {"section": "billing", "payment": payment, "can_manage": request.membership.can_manage,
               "poll_seconds": PAYMENT_POLL_SECONDS}
    if payment.status in (Payment.Status.FAILED, Payment.Status.CANCELED) and context["can_manage"]:
        # "Try again": the same purchase, a new checkout.
        context["retry"] = {
            "plan": payment.plan.code if payment.kind == Payment.Kind.PLAN and payment.plan_id else "",
            "credits": payment.credits if payment.kind == Payment.Kind.CREDITS else "",
            "gateway": payment.gateway,
            "method": "pix" if payment.method == Payment.Method.PIX else "",
        }
    return context


@checkout_forms
@tenant_required
def payment_detail(request: HttpRequest, reference) -> HttpResponse:
    payment = get_object_or_404(Payment.objects.select_related("plan"), reference=reference)
    return render(request, "billing/payment.html", _payment_context(request, payment))


@checkout_forms
@tenant_required
def payment_status(request: HttpRequest, reference) -> HttpResponse:
    """Polled by the payment page (htmx) while the payment is pending: 204 while nothing changed, then the
    page's new state (paid: "Payment confirmed" and the receipt; failed: why, and "Try again"), which stops
    the polling. Only reads our database: the gateway's signed webhook is what changes the payment."""
    payment = get_object_or_404(Payment.objects.select_related("plan"), reference=reference)
    if payment.status == Payment.Status.PENDING and request.GET.get("shown") == Payment.Status.PENDING:
        response = HttpResponse(status=204)
    else:
        response = render(request, "billing/_payment_state.html", _payment_context(request, payment))
    response["X-Payment-Status"] = payment.status
    response["Cache-Control"] = "no-store"
    return response


@tenant_required
def payment_return(request: HttpRequest, reference) -> HttpResponse:
    payment = get_object_or_404(Payment, reference=reference)
    if request.GET.get("canceled"):
        messages.warning(request, _("The payment was not completed."))
        return redirect("billing_payment", reference=payment.reference)
    _confirm(request, payment, request.GET.dict())
    return redirect("billing_payment", reference=payment.reference)


@require_POST
@tenant_required
def payment_check(request: HttpRequest, reference) -> HttpResponse:
    payment = get_object_or_404(Payment, reference=reference)
    _confirm(request, payment, {})
    return redirect("billing_payment", reference=payment.reference)


def _confirm(request: HttpRequest, payment: Payment, params: dict) -> None:
    if payment.status != Payment.Status.PENDING or payment.gateway == "sandbox":
        return
    try:
        services.confirm_with_gateway(payment, params)
    except services.BillingError as exc:
        messages.error(request, str(exc))
        return
    payment.refresh_from_db()
    if payment.status == Payment.Status.PAID:
        messages.success(request, _("Payment confirmed. Thank you!"))
    elif payment.status == Payment.Status.PENDING:
        messages.info(request, _("The payment is not confirmed yet; this page updates when it is."))


@tenant_required
def receipt(request: HttpRequest, reference) -> HttpResponse:
    payment = get_object_or_404(Payment.objects.select_related("plan", "tenant"), reference=reference,
                                status__in=[Payment.Status.PAID, Payment.Status.REFUNDED])
    issuer = {"name": settings.BILLING_ISSUER_NAME, "cnpj": settings.BILLING_ISSUER_CNPJ,
              "address": settings.BILLING_ISSUER_ADDRESS}
    return render(request, "billing/receipt.html", {
        "payment": payment, "issuer": issuer, "can_edit_company": request.membership.can_manage})


@tenant_required
def sandbox_checkout(request: HttpRequest, reference) -> HttpResponse:
    payment = get_object_or_404(Payment.objects.select_related("plan"), reference=reference, gateway="sandbox")
    if not gateways.get_gateway("sandbox").is_configured():
        raise Http404
    if request.method == "POST":
        if not request.membership.can_manage:
            messages.error(request, _("Only owners and administrators can pay."))
            return redirect("billing")
        event = services.complete_sandbox_payment(payment, approve=request.POST.get("decision") == "approve")
        payment.refresh_from_db()
        if payment.status == Payment.Status.PAID:
            messages.success(request, _("Test payment approved. No money moved."))
        elif event.result == GatewayEvent.Result.APPLIED:
            messages.warning(request, _("Test payment declined."))
        return redirect("billing_payment", reference=payment.reference)
    return render(request, "billing/sandbox_checkout.html", {"section": "billing", "payment": payment})


@csrf_exempt
@require_POST
def webhook(request: HttpRequest, gateway: str) -> HttpResponse:
    """Gateways post here; only verified events are recorded and applied, each exactly once."""
    if gateway not in gateways.GATEWAYS or gateway == "sandbox":
        raise Http404
    provider = gateways.get_gateway(gateway)
    if not provider.is_configured():
        raise Http404
    if len(request.body) > MAX_WEBHOOK_BYTES:
        return JsonResponse({"error": "payload too large"}, status=413)
    try:
        event = provider.parse_webhook(request)
    except WebhookRejected as exc:
        log.warning("rejected %s webhook: %s", gateway, exc)
        return JsonResponse({"error": "rejected"}, status=400)
    except GatewayError as exc:
        # Nothing stored, nothing changed: the provider delivers again later.
        log.warning("%s webhook could not be confirmed with the provider (%s): %s", gateway, exc.code, exc.detail)
        response = JsonResponse({"error": "provider unavailable, retry later"}, status=503)
        response["Retry-After"] = str(WEBHOOK_RETRY_AFTER_SECONDS)
        return response
    try:
        record = services.process_event(gateway, event)
    except Exception:
        log.exception("%s webhook %s failed", gateway, event.event_id)
        return JsonResponse({"error": "not processed, retry later"}, status=500)
    return JsonResponse({"result": record.result})
