"""The portal's pages in a real browser at 390 px (a phone) and 1280 px: no horizontal overflow, no English
left on a pt-BR page, no console errors; screenshots in tests/artifacts/. And what changes live does so
without a reload (the recipients table of a running campaign)."""
from datetime import time, timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from django_scopes import scopes_disabled
from playwright.sync_api import expect

from chips import campaigns, contacts
from chips.models import CampaignRecipient, Message

from .browserkit import ARTIFACTS, LAPTOP, PHONE, browser, session_cookie  # noqa: F401 - fixture
from .conftest import placed_chip, png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
R = CampaignRecipient.Status


def running_campaign(tenant, chip, people: int = 3):
    group = contacts.create_list(tenant, "Clientes da loja")
    for n in range(people):
        contacts.save_contact(tenant, phone=f"11 98888-{n:04d}", name=f"Cliente {n}", consent_source="balcão",
                              consent_at=timezone.now() - timedelta(days=1), lists=[group],
                              fields={"cidade": "Campinas"})
    campaign = campaigns.save_campaign(
        tenant, name="Ofertas de verão", template="Oi {primeiro_nome}, ofertas em {cidade|sua cidade}!",
        lists=[group], chips=[chip], pace_per_minute=10, window_days=list(range(7)), window_start=time(0),
        window_end=time(23, 59))
    return campaigns.start(campaign), group


def mark_sent(campaign, chip, recipient, status=Message.Status.DELIVERED):
    """What the sender and WAHA's acks do to a recipient, in the database."""
    now = timezone.now()
    with scopes_disabled():
        message = Message.objects.create(tenant_id=campaign.tenant_id, chip=chip, direction=Message.Direction.OUT,
                                         peer=recipient.phone, body="Oi", status=status, sent_at=now,
                                         delivered_at=now if status != Message.Status.SENT else None)
        CampaignRecipient.objects.filter(pk=recipient.pk).update(status=R.SENT, message=message, sent_at=now, chip=chip)


@pytest.fixture
def owner_in_browser(client, make_owner):
    user, tenant = make_owner(company="Padaria Pão Quente")
    client.force_login(user)
    return tenant, client


def test_the_recipients_table_follows_the_counters_without_a_reload(owner_in_browser, browser):  # noqa: F811
    tenant, client = owner_in_browser
    chip = placed_chip(tenant)
    campaign, _group = running_campaign(tenant, chip)
    with scopes_disabled():
        first, second, third = CampaignRecipient.objects.filter(campaign=campaign).order_by("pk")
    browser.cookies = session_cookie(client, browser.base)
    page = browser.open(LAPTOP)
    page.goto(f"{browser.base}/campanhas/{campaign.pk}/")
    assert page.locator("#recipient-rows tr[data-outcome=pending]").count() == 3
    page.evaluate("window.__noReload = 'same page'")

    mark_sent(campaign, chip, first)
    mark_sent(campaign, chip, second, Message.Status.SENT)
    page.wait_for_selector(f"#recipient-{first.pk}[data-outcome=delivered]")
    page.wait_for_selector(f"#recipient-{second.pk}[data-outcome=sent]")
    assert page.evaluate("window.__noReload") == "same page"
    counters = {key: page.inner_text(f"[data-counter={key}] strong") for key in ("pending", "sent", "delivered")}
    assert counters == {"pending": "1", "sent": "2", "delivered": "1"}
    # The filter shown is kept by the refresh.
    page.select_option("#id_outcome", "pending")
    rows = page.locator("#recipient-rows tr[id^=recipient-]")
    expect(rows).to_have_count(1)  # (locators, not wait_for_function: the CSP forbids eval)
    mark_sent(campaign, chip, third)
    expect(rows).to_have_count(0)
    expect(page.locator("[data-counter=pending] strong")).to_have_text("0")
    page.screenshot(path=str(ARTIFACTS / "page_campaign_live_1280.png"), full_page=True)


@pytest.fixture
def portal_with_data(client, make_owner, settings):
    """A company as after a week of use: a connected chip, conversations, contacts, a running campaign."""
    settings.BILLING_SANDBOX_ENABLED = True
    user, tenant = make_owner(company="Padaria Pão Quente")
    chip = placed_chip(tenant, alias="Balcão da Doceria Central")
    campaign, group = running_campaign(tenant, chip, people=12)
    with scopes_disabled():
        recipients = list(CampaignRecipient.objects.filter(campaign=campaign).order_by("pk"))
    for recipient in recipients[:5]:
        mark_sent(campaign, chip, recipient)
    now = timezone.now()
    with scopes_disabled():
        Message.objects.create(tenant=tenant, chip=chip, direction=Message.Direction.IN, peer="+5511988880001",
                               peer_name="Cliente 1", body="Vocês abrem no domingo? " * 6,
                               status=Message.Status.RECEIVED, created_at=now)
        Message.objects.create(tenant=tenant, chip=chip, direction=Message.Direction.OUT, peer="+5511988880001",
                               body="Abrimos das 8h às 12h!", status=Message.Status.READ, sent_at=now)
        message = Message.objects.filter(tenant=tenant).order_by("-pk").first()
        # The inbox: a second chip, a number known only by its WhatsApp name, a photo in the thread.
        other = placed_chip(tenant, alias="Entregas e Encomendas da Zona Norte", phone="+5511999990002")
        Message.objects.create(tenant=tenant, chip=other, direction=Message.Direction.IN, peer="+5511977770001",
                               peer_name="Dona Maria da Silva", body="Chegou a encomenda, obrigada!",
                               status=Message.Status.RECEIVED)
        photo = Message(tenant=tenant, chip=chip, direction=Message.Direction.IN, peer="+5511988880001",
                        peer_name="Cliente 1", kind=Message.Kind.IMAGE, body="O bolo chegou assim",
                        media_name="bolo.png", media_mimetype="image/png", status=Message.Status.RECEIVED)
        photo.media.save("bolo.png", ContentFile(png_bytes()), save=True)
        contact = group.contacts.order_by("pk").first()
    client.force_login(user)
    return {"client": client, "chip": chip, "campaign": campaign, "list": group, "message": message,
            "contact": contact}


def tour(data) -> dict[str, str]:
    chip, campaign = data["chip"], data["campaign"]
    return {
        "home": "/", "login": "/login/", "signup": "/signup/", "pricing": "/precos/",
        "dashboard": "/painel/", "chips": "/chips/", "chip": f"/chips/{chip.pk}/",
        "messages": "/mensagens/", "message": f"/mensagens/{data['message'].pk}/",
        "inbox": "/conversas/", "inbox_chip": f"/conversas/?chip={chip.pk}",
        "conversation": f"/conversas/{chip.pk}/5511988880001/",
        "campaigns": "/campanhas/", "campaign_new": "/campanhas/nova/", "campaign": f"/campanhas/{campaign.pk}/",
        "campaign_report": f"/campanhas/{campaign.pk}/relatorio/", "chip_report": "/campanhas/relatorio-chips/",
        "contacts": "/contatos/", "contact": f"/contatos/{data['contact'].pk}/", "contact_new": "/contatos/novo/",
        "import": "/contatos/importar/", "lists": "/contatos/listas/", "list": f"/contatos/listas/{data['list'].pk}/",
        "opt_out": "/contatos/descadastro/", "settings": "/configuracoes/", "api": "/api-keys/",
        "webhook": "/api-keys/webhook/", "billing": "/cobranca/",
    }


PUBLIC = {"home", "login", "signup", "pricing"}
# Selects of the page whose chosen option's text does not fit in them (its width, the paddings, the arrow).
CLIPPED = """() => Array.from(document.querySelectorAll("main select")).filter((select) => {
    const style = getComputedStyle(select), option = select.options[select.selectedIndex];
    const context = document.createElement("canvas").getContext("2d");
    context.font = style.font;
    const needed = context.measureText(option ? option.text : "").width + parseFloat(style.paddingLeft)
        + parseFloat(style.paddingRight) + 20;
    return select.getBoundingClientRect().width > 0 && needed > select.getBoundingClientRect().width;
}).map((select) => `#${select.id} ("${select.options[select.selectedIndex].text}")`)"""
# Entries of the top bar not on the brand's row (the bar wrapped into two rows).
OFF_ROW = """() => {
    const brand = document.querySelector(".topbar .brand").getBoundingClientRect();
    return Array.from(document.querySelectorAll(".mainnav > a, .mainnav .more-button, .account > *"))
        .filter((e) => e.getBoundingClientRect().height > 0).filter((e) => {
            const box = e.getBoundingClientRect(), middle = (box.top + box.bottom) / 2;
            return middle < brand.top || middle > brand.bottom;
        }).map((e) => e.textContent.trim().replace(/\\s+/g, " ").slice(0, 40));
}"""
# Pixels of one colour inside a chart's plot area (its legend's swatch is outside).
COLOUR_PIXELS = """([id, rgb]) => {
    const canvas = document.getElementById(id);
    const area = Chart.getChart(canvas).chartArea, ratio = canvas.width / canvas.clientWidth;
    const pixels = canvas.getContext("2d").getImageData(area.left * ratio, area.top * ratio,
        (area.right - area.left) * ratio, (area.bottom - area.top) * ratio).data;
    let n = 0;
    for (let i = 0; i < pixels.length; i += 4) {
        if (pixels[i] === rgb[0] && pixels[i + 1] === rgb[1] && pixels[i + 2] === rgb[2]) n++;
    }
    return n;
}"""


@pytest.mark.parametrize("width", [PHONE, LAPTOP])
def test_the_main_pages_fit_speak_portuguese_and_log_no_errors(portal_with_data, browser, width):  # noqa: F811
    browser.cookies = session_cookie(portal_with_data["client"], browser.base)
    pages = tour(portal_with_data)
    problems = []
    public = browser.open(width, logged_in=False)
    member = browser.open(width)
    for name, path in pages.items():
        page = public if name in PUBLIC else member
        response = page.goto(browser.base + path)
        assert response.status == 200, f"{name}: {response.status}"
        page.wait_for_load_state("networkidle")
        problems += browser.check(page, name)
        page.console_errors.clear()
        problems += [f"{name} at {width} px: the select {clipped} is cut off" for clipped in page.evaluate(CLIPPED)]
        if width == LAPTOP:
            problems += [f"{name} at {width} px: the top bar wraps ({off!r} on a second row)"
                         for off in page.evaluate(OFF_ROW)]
        if name == "conversation":  # the photo is shown in the thread, the reply form under it
            assert page.evaluate("document.querySelector('.bubble img').naturalWidth") > 0
            expect(page.locator("#reply-form button[type=submit]")).to_be_visible()
        if name == "campaign_report":  # sent within one minute: one period, drawn as visible bars
            assert page.evaluate("Chart.getChart(document.getElementById('rates-chart')).config.type") == "bar"
            assert page.evaluate(COLOUR_PIXELS, ["rates-chart", [0x3f, 0xa6, 0x6b]]) > 500
    assert not problems, "\n".join(problems)


def test_the_checks_catch_overflow_english_and_console_errors(browser):  # noqa: F811
    page = browser.open(PHONE)
    page.context.add_cookies([{"name": "django_language", "value": "en", "url": browser.base}])
    page.goto(browser.base + "/login/")
    page.evaluate("""() => {
        const wide = document.createElement("div");
        wide.style.width = "900px"; wide.style.height = "10px";
        document.body.appendChild(wide);
        console.error("boom");
    }""")
    problems = browser.check(page, "self_test")
    assert len(problems) == 3, problems
    assert "is 9" in problems[0] and "English" in problems[1] and "Forgot your password?" in problems[1]
    assert "boom" in problems[2]


def test_forms_show_each_error_under_its_own_field_and_the_menu_opens_on_phones(owner_in_browser, browser):  # noqa: F811
    tenant, client = owner_in_browser
    from whago.models import Membership

    with scopes_disabled():
        email = Membership.objects.filter(tenant=tenant).select_related("user").get().user.email
    page = browser.open(PHONE, logged_in=False)
    page.goto(browser.base + "/signup/")
    assert page.locator("#topmenu").is_hidden()
    page.click("label.menu-button")
    expect(page.locator("#topmenu a[href='/login/']")).to_be_visible()
    page.click("label.menu-button")
    page.fill("#id_full_name", "Maria Souza")
    page.fill("#id_company", "")  # (the input's maxlength stops a too-long name in a browser)
    page.fill("#id_email", email.upper())
    page.fill("#id_password1", "Fermento-Natural-2026")
    page.fill("#id_password2", "Fermento-Natural-2027")
    page.click("main form button[type=submit]")
    company_error = page.locator("[data-field=company] .errorlist")
    expect(company_error).to_contain_text("obrigatório")
    expect(page.locator("[data-field=password2] .errorlist")).to_contain_text("não coincidem")
    expect(page.locator("[data-field=email] .errorlist")).to_contain_text("Já existe uma conta")
    expect(page.locator("[data-field=full_name] .errorlist")).to_have_count(0)
    # On screen too: the company's error sits between its own input and the next field's label.
    error_box = company_error.bounding_box()
    assert page.locator("#id_company").bounding_box()["y"] < error_box["y"]
    assert error_box["y"] < page.locator("label[for=id_email]").bounding_box()["y"]
    page.screenshot(path=str(ARTIFACTS / "page_signup_errors_390.png"), full_page=True)

    browser.cookies = session_cookie(client, browser.base)
    builder = browser.open(LAPTOP)
    placed_chip(tenant)
    contacts.create_list(tenant, "Clientes")
    builder.goto(browser.base + "/campanhas/nova/")
    box = builder.locator("#id_chips_0").bounding_box()
    label = builder.locator("label[for=id_chips_0]").bounding_box()
    assert label["x"] <= box["x"] and box["y"] < label["y"] + label["height"] and box["width"] < 40  # inline, not a row
    builder.screenshot(path=str(ARTIFACTS / "page_campaign_builder_1280.png"), full_page=True)


def test_billing_api_and_settings_are_under_more_on_wide_screens_and_listed_on_phones(owner_in_browser, browser):  # noqa: F811
    _tenant, client = owner_in_browser
    browser.cookies = session_cookie(client, browser.base)
    wide = browser.open(LAPTOP)
    wide.goto(browser.base + "/painel/")
    billing = wide.locator(".mainnav a[href='/cobranca/']")
    expect(billing).to_be_hidden()
    wide.click("label.more-button")  # no script: a checkbox's label
    expect(billing).to_be_visible()
    expect(wide.locator(".mainnav a[href='/configuracoes/']")).to_be_visible()
    billing.click()
    wide.wait_for_url("**/cobranca/")
    expect(wide.locator("label.more-button.current")).to_be_visible()  # the current page is under More
    assert wide.evaluate(OFF_ROW) == []

    phone = browser.open(PHONE)
    phone.goto(browser.base + "/painel/")
    expect(phone.locator("label.more-button")).to_be_hidden()
    phone.click("label.menu-button")
    for path in ("/cobranca/", "/api-keys/", "/configuracoes/"):
        expect(phone.locator(f".mainnav a[href='{path}']")).to_be_visible()
