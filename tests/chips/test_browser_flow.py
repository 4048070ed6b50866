"""A new user in a real browser (Debian's chromium driven by Playwright), end to end on Docker.

Sign up → create a chip → the QR code is visible → the phone scans (simulator) → the status
turns WORKING without a reload → send a message → it shows DELIVERED. Screenshots go to
tests/artifacts/ (git-ignored).
"""
import os
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django_scopes import scopes_disabled

from chips.models import Chip
from waha import manager

from .conftest import DOCKER, chip_row, sim_of, wait_chip, wait_until

pytestmark = [*DOCKER, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def page(monkeypatch):
    """A chromium page (Portuguese, like our users); Playwright never downloads a browser."""
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing: scripts/setup.sh installs it (apt-get install chromium).")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(locale="pt-BR", viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        yield page
        context.close()
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"browser_{name}.png"), full_page=True)


def test_sign_up_connect_a_chip_and_send_a_message_in_the_browser(worker, live_server, page):
    base = live_server.url.replace("localhost", "127.0.0.1")

    page.goto(f"{base}/signup/")
    page.fill("#id_full_name", "Maria Souza")
    page.fill("#id_company", "Padaria Pão Quente")
    page.fill("#id_email", "maria@padaria.com.br")
    page.fill("#id_password1", "Fermento-Natural-2026")
    page.fill("#id_password2", "Fermento-Natural-2026")
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base}/painel/")
    shot(page, "1_dashboard")
    assert page.locator("#confirm-email").is_visible()

    # The address is confirmed through the link e-mailed at sign-up (numbers wait for it).
    link = wait_until(lambda: next((w for m in mail.outbox for w in m.body.split() if "/confirmar-email/" in w),
                                   None), message="the confirmation e-mail")
    page.goto(link.replace("http://testserver", base).replace(settings.SITE_URL, base))
    page.wait_for_url(f"{base}/painel/")
    assert page.locator("#confirm-email").count() == 0

    page.click("nav.mainnav a[href='/chips/']")
    page.fill("#id_alias", "Balcão")
    page.click("#new-chip button[type=submit]")
    page.wait_for_url(f"{base}/chips/*/")
    chip_id = int(page.url.rstrip("/").rsplit("/", 1)[1])

    # The QR code appears by itself once the worker has prepared the session, served by Django.
    qr = page.wait_for_selector("#chip-qr", state="visible", timeout=40_000)
    page.wait_for_function("document.querySelector('#chip-qr').complete && "
                           "document.querySelector('#chip-qr').naturalWidth > 0")
    assert qr.get_attribute("src").startswith(f"/chips/{chip_id}/qr.png")
    shot(page, "2_qr_code")

    # Mark this document: if the page reloaded, the mark would be gone.
    page.evaluate("window.__noReload = 'same document'")
    chip = chip_row(chip_id)
    sim_of(chip).scan(chip.session_name, "5511912345678", "Padaria", value=manager.qr(chip.waha_session, "raw"))
    page.wait_for_selector("#chip-live[data-status='WORKING']", timeout=20_000)
    assert page.evaluate("window.__noReload") == "same document"
    assert "+55 11 91234-5678" in page.inner_text("#state-working")
    assert page.query_selector("#chip-qr") is None and page.query_selector("#id_phone") is None
    wait_chip(chip_id, Chip.Status.WORKING)
    shot(page, "3_connected")

    page.click("#state-working ~ .actions a.primary")
    page.wait_for_url(f"{base}/mensagens/*")
    page.fill("#id_to", "(11) 98765-4321")
    page.fill("#id_text", "Seu pão de queijo está pronto!")
    page.click("#send-form button[type=submit]")
    page.wait_for_url(f"{base}/mensagens/")
    row = page.wait_for_selector("#message-rows tr[id^=message-]")
    page.evaluate("window.__noReload = 'same list'")
    page.wait_for_selector("#message-rows [data-status='DELIVERED']", timeout=20_000)
    assert page.evaluate("window.__noReload") == "same list"
    assert "+55 11 98765-4321" in row.inner_text() or "+55 11 98765-4321" in page.inner_text("#message-rows")
    shot(page, "4_delivered")
    with scopes_disabled():
        assert chip_row(chip_id).messages.get().status == "DELIVERED"
