"""Content-Security-Policy (django-csp): every main page is served with it, and in a real browser no page
breaks it — no inline script or style, no eval (htmx runs without it), nothing from other sites.

The browser test listens to the browser's own `securitypolicyviolation` events and to its console (where
Chromium reports each refused script, style or connection), on the portal, the operators' console and
the API docs, and checks that what the inline code used to do still happens (charts drawn, the progress
bar's widths, a select that submits, a confirmation asked).
"""
import re
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from billing.models import Payment
from chips.models import CampaignRecipient, Message
from tests.chips.browserkit import LAPTOP, browser, session_cookie  # noqa: F401 - fixture
from tests.chips.conftest import placed_chip
from tests.chips.test_browser_pages import mark_sent, running_campaign
from tests.ops.conftest import pass_second_factor
from waha.models import ContainerStatus, WahaContainer

ROOT = Path(__file__).resolve().parents[2]
STRICT = {
    "default-src": ["'self'"], "script-src": ["'self'"], "style-src": ["'self'"], "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"], "object-src": ["'none'"], "base-uri": ["'self'"], "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def policy(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"{response.wsgi_request.path}: no Content-Security-Policy header"
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {name: values for name, *values in directives}


@pytest.fixture
def clients(client_factory, make_owner, settings):
    """Anonymous, a company's owner (a chip, a campaign under way) and an operator past the second factor."""
    settings.ADMIN_REQUIRE_2FA = True
    user, tenant = make_owner(company="Padaria Pão Quente")
    chip = placed_chip(tenant, alias="Balcão")
    campaign, _ = running_campaign(tenant, chip, people=4)
    with scopes_disabled():
        for recipient in CampaignRecipient.objects.filter(campaign=campaign).order_by("pk")[:2]:
            mark_sent(campaign, chip, recipient)
        Message.objects.create(tenant=tenant, chip=chip, direction=Message.Direction.IN, peer="+5511988880001",
                               body="Vocês abrem\nno domingo?", status=Message.Status.RECEIVED,
                               created_at=timezone.now())
        container = WahaContainer.objects.create(tenant=tenant, name="whago-csp-1", runtime="docker", port=21990,
                                                 status=ContainerStatus.RUNNING)
        payment = Payment.objects.create(tenant=tenant, kind="credits", credits=1000, amount="49.90", currency="BRL",
                                         gateway="sandbox", external_id="sbx-csp-1", status=Payment.Status.PAID,
                                         paid_at=timezone.now())
    owner = client_factory()
    owner.force_login(user)
    operator_user = get_user_model().objects.create_superuser(email="csp@whago.test", password=None)
    operator = client_factory()
    operator.force_login(operator_user)
    pass_second_factor(operator, operator_user)
    operator.user = operator_user
    return {"anonymous": client_factory(), "owner": owner, "operator": operator, "chip": chip,
            "campaign": campaign, "container": container, "tenant": tenant, "payment": payment}


def main_pages(data) -> list[tuple[str, str, str]]:
    """(who, name, path) of the pages the header test and the browser test go through."""
    chip, campaign, container = data["chip"], data["campaign"], data["container"]
    return [
        ("anonymous", "landing", reverse("landing")), ("anonymous", "login", reverse("login")),
        ("anonymous", "signup", reverse("signup")), ("anonymous", "pricing", reverse("pricing")),
        ("anonymous", "admin login", reverse("admin:login")), ("anonymous", "api docs", reverse("api_docs")),
        ("owner", "dashboard", reverse("dashboard")), ("owner", "chips", reverse("chip_list")),
        ("owner", "chip", reverse("chip_detail", args=[chip.pk])), ("owner", "messages", reverse("message_list")),
        ("owner", "campaigns", reverse("campaign_list")),
        ("owner", "campaign", reverse("campaign_detail", args=[campaign.pk])),
        ("owner", "campaign report", reverse("campaign_report", args=[campaign.pk])),
        ("owner", "chip report", reverse("campaign_chip_report")),
        ("owner", "billing", reverse("billing")), ("owner", "api keys", reverse("api_keys")),
        ("owner", "payment", reverse("billing_payment", args=[data["payment"].reference])),
        ("owner", "receipt", reverse("billing_receipt", args=[data["payment"].reference])),
        ("owner", "settings", reverse("settings")),
        ("operator", "admin index", "/admin/"),
        ("operator", "admin containers", reverse("admin:waha_wahacontainer_changelist")),
        ("operator", "admin container", reverse("admin:waha_wahacontainer_change", args=[container.pk])),
        ("operator", "admin tenants", reverse("admin:whago_tenant_changelist")),
        ("operator", "admin tenant", reverse("admin:whago_tenant_change", args=[data["tenant"].pk])),
        ("operator", "ops dashboard", reverse("ops_dashboard")),
    ]


@pytest.mark.django_db
def test_every_main_page_is_served_with_the_policy(clients):
    for who, name, path in main_pages(clients):
        response = clients[who].get(path)
        assert response.status_code == 200, f"{name}: {response.status_code}"
        found = policy(response)
        expected = dict(STRICT)
        if name in ("billing", "payment"):  # their forms go on to the gateways' checkout pages
            expected["form-action"] = ["'self'", "https://checkout.stripe.com", "https://*.mercadopago.com.br",
                                       "https://*.mercadopago.com", "https://*.paypal.com"]
        assert {key: found.get(key) for key in expected} == expected, name
        header = response.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in header and "unsafe-eval" not in header, name
    # Swagger UI's start-up script is a file of its own, under the same policy.
    script = clients["anonymous"].get(reverse("api_docs") + "?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert policy(script)["script-src"] == ["'self'"]


# What the policy refuses, as written in a template or in HTML built by Python code.
INLINE = re.compile(r"""\son[a-z]+\s*=|\sstyle\s*=|<style\b|<script(?![^>]*\ssrc=)[^>]*>|\shx-on|["']js:""", re.I)


def test_no_template_or_admin_column_has_inline_script_or_style():
    """Pages the browser walk does not reach are held to the same rule: no inline handler, style= attribute,
    <style> or <script> block, hx-on or js: value (data in json_script elements is allowed)."""
    found = []
    for path in sorted(ROOT.glob("**/templates/**/*.html")):
        if ".venv" in path.parts or "var" in path.parts:
            continue
        text = re.sub(r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}", "", path.read_text(), flags=re.S)
        found += [f"{path.relative_to(ROOT)}: {match.group(0)}" for match in INLINE.finditer(text)]
    for path in sorted(ROOT.glob("*/*.py")):
        if path.parts[-2] in {"tests", ".venv"}:
            continue
        found += [f"{path.relative_to(ROOT)}: {line.strip()}" for line in path.read_text().splitlines()
                  if "format_html" in line and INLINE.search(line)]
    assert not found, "\n".join(found)


# Every refusal the browser reports, with where it came from.
LISTEN = """document.addEventListener("securitypolicyviolation", (e) => {
  (window.__csp = window.__csp || []).push(
    `${e.effectiveDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});"""


def console_lists(data) -> list[tuple[str, str, str]]:
    """Every list of the operators' console (filters, actions of the Django admin), and forms with its widgets
    (two-box selects, date and time pickers, the related-object popups)."""
    lists = [("operator", f"admin {model._meta.label}",
              reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))
             for model in sorted(admin.site._registry, key=lambda model: model._meta.label)]
    operator = data["operator"].user
    return lists + [("operator", "admin user form", reverse("admin:whago_user_change", args=[operator.pk])),
                    ("operator", "admin plan form", reverse("admin:billing_plan_add")),
                    ("operator", "admin totp form", reverse("admin:otp_totp_totpdevice_add"))]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_no_page_breaks_the_policy_in_a_browser(clients, browser):  # noqa: F811
    pages = {}
    for who in ("anonymous", "owner", "operator"):
        browser.cookies = session_cookie(clients[who], browser.base) if who != "anonymous" else []
        pages[who] = browser.open(LAPTOP)
        pages[who].add_init_script(LISTEN)
    problems = []
    for who, name, path in main_pages(clients) + console_lists(clients):
        page = pages[who]
        response = page.goto(browser.base + path)
        assert response.status == 200, f"{name}: {response.status}"
        assert "Content-Security-Policy" in {key.title(): value for key, value in response.headers.items()}
        page.wait_for_load_state("networkidle")
        if name == "api docs":
            page.wait_for_selector(".swagger-ui .opblock")  # the UI was built by its script
        elif name == "campaign report":
            assert page.evaluate("!!Chart.getChart(document.getElementById('rates-chart'))"), "no chart drawn"
        elif name == "ops dashboard":
            assert page.evaluate("!!Chart.getChart(document.getElementById('chart-load'))"), "no chart drawn"
        elif name == "campaign":
            widths = page.evaluate("""[...document.querySelectorAll('#progress .bar [data-flex]')]
                .map((el) => [el.dataset.flex, getComputedStyle(el).flexGrow])""")
            assert widths and all(float(flex) == float(grow) for flex, grow in widths), widths
        elif name == "admin container":
            page.wait_for_selector("#log-tail-output :is(p, pre)")  # htmx asked for the log at load
        violations = page.evaluate("window.__csp || []")
        refused = [text for text in page.console_errors if "Content Security Policy" in text]
        if violations or refused:
            problems.append(f"{name} ({path}): {violations[:4]} {refused[:4]}")
        page.console_errors.clear()
    assert not problems, "\n".join(problems)

    # What inline handlers did, done by static/js/whago.js: a confirmation before a chip is disconnected...
    owner = pages["owner"]
    owner.goto(browser.base + reverse("chip_detail", args=[clients["chip"].pk]))
    asked = []
    owner.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    owner.click("form[data-confirm] button[type=submit]")
    owner.wait_for_load_state("networkidle")
    assert asked == ["Desconectar este número do WhatsApp?"] and owner.url.endswith(f"/chips/{clients['chip'].pk}/")
    # ...and the language select that submits itself.
    anonymous = pages["anonymous"]
    anonymous.goto(browser.base + reverse("landing"))
    with anonymous.expect_navigation():
        anonymous.select_option("#language", "en")
    assert anonymous.evaluate("document.documentElement.lang") == "en"
    assert not anonymous.evaluate("window.__csp || []") and not owner.evaluate("window.__csp || []")


@pytest.fixture
def stripe_owner(make_owner, client_factory, settings):
    """A company's owner on a site whose only gateway is Stripe, its API faked at the HTTP boundary."""
    import responses

    settings.STRIPE_SECRET_KEY = "sk_test_51WhagoTestKey"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_whagoTestSecret"
    settings.BILLING_SANDBOX_ENABLED = False
    user, _ = make_owner(company="Mercado Boa Vista")
    owner = client_factory()
    owner.force_login(user)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as provider:
        provider.add(responses.POST, "https://api.stripe.com/v1/checkout/sessions", json={
            "id": "cs_test_csp1", "object": "checkout.session", "mode": "subscription", "status": "open",
            "amount_total": 19700, "currency": "brl", "payment_status": "unpaid",
            "url": "https://checkout.stripe.com/c/pay/cs_test_csp1",
        })
        yield owner


@pytest.fixture
def checkout_browser(live_server, monkeypatch):
    """A chromium page whose checkout.stripe.com resolves to a closed port on 127.0.0.1: nothing leaves the
    machine, and a navigation the policy allowed ends in a refused connection instead of being blocked."""
    import socket

    from playwright.sync_api import sync_playwright

    from tests.chips.browserkit import ARGS, CHROMIUM

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    rules = f"--host-resolver-rules=MAP checkout.stripe.com 127.0.0.1:{closed}, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, rules], headless=True)
        context = launched.new_context(locale="pt-BR")
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.base = live_server.url.replace("localhost", "127.0.0.1")
        yield page
        context.close()
        launched.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_pay_button_goes_on_to_the_gateways_checkout(stripe_owner, checkout_browser):
    """form-action 'self' alone would stop the browser at the redirect to Stripe's page (a form's redirect is
    checked too): the billing pages allow the gateways' checkout origins."""
    page = checkout_browser
    page.context.add_cookies([{"name": "sessionid", "value": stripe_owner.cookies["sessionid"].value,
                               "url": page.base}])
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(page.base + reverse("billing"))
    # Blocked, the browser would abort the form's request itself (and say so in the console) and never ask
    # for Stripe's page; allowed, it asks for it and finds the closed port.
    with page.expect_event("requestfailed", timeout=10_000,
                           predicate=lambda request: request.url.startswith("https://checkout.stripe.com/")) as failed:
        page.locator("form.pay-form button[type=submit]").first.click()
    assert failed.value.url == "https://checkout.stripe.com/c/pay/cs_test_csp1"
    assert failed.value.failure == "net::ERR_CONNECTION_REFUSED"
    assert not [text for text in console if "Content Security Policy" in text]
