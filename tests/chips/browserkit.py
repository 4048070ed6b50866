"""Pages in a real browser (Debian's chromium through Playwright, never a downloaded one), as our users see
them: at a phone's width and a laptop's, in Portuguese.

`browser` gives `open(width)` → a page that records console errors; `check(page, name)` fails on
horizontal overflow, English text of our catalogue left on a pt-BR page and console errors, and saves a
screenshot under tests/artifacts/ (git-ignored).
"""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CATALOGUE = ROOT / "locale" / "pt_BR" / "LC_MESSAGES" / "django.po"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE, LAPTOP = 390, 1280

# Elements wider than the viewport, for the failure message (what overflows, and by how much).
OVERFLOW = """() => {
    const width = document.documentElement.clientWidth;
    const wide = [];
    for (const el of document.querySelectorAll("body *")) {
        const box = el.getBoundingClientRect();
        if (box.width && box.right > width + 1 && getComputedStyle(el).position !== "fixed") {
            const classes = typeof el.className === "string" && el.className.trim()
                ? "." + el.className.trim().split(/\\s+/).join(".") : "";
            wide.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${classes} ${Math.round(box.right)}`);
        }
    }
    return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 8)};
}"""


def _entries(text: str):
    """(msgid, msgstr, flags, has_context, plural) of a .po file."""
    for block in text.split("\n\n"):
        fields, current, flags = {}, None, ""
        for line in block.splitlines():
            if line.startswith("#,"):
                flags += line
            elif line.startswith(("msgctxt", "msgid_plural", "msgid", "msgstr")):
                current, _sep, rest = line.partition(" ")
                fields[current] = rest[1:-1]
            elif line.startswith('"') and current:
                fields[current] += line[1:-1]
        if "msgid" in fields:
            msgstr = fields.get("msgstr", fields.get("msgstr[0]", ""))
            yield fields["msgid"], msgstr, flags, "msgctxt" in fields, "msgid_plural" in fields


def english_msgids() -> list[str]:
    """English texts of our catalogue that have a different pt-BR translation: seeing one on a pt-BR page
    means a string was left untranslated. Only plain texts of two words or more (no placeholders, no
    markup): single words and names (API, WhatsApp, E-mail) also occur in Portuguese."""
    found = []
    for msgid, msgstr, flags, _context, plural in _entries(CATALOGUE.read_text()):
        msgid = msgid.replace('\\"', '"')
        if not msgstr or msgid == msgstr or "fuzzy" in flags or plural or any(c in msgid for c in "%<{"):
            continue
        if len(msgid.split()) >= 2 and len(msgid) >= 8:
            found.append(msgid)
    return found


@dataclass
class Browser:
    playwright_browser: object
    base: str
    cookies: list = field(default_factory=list)
    pages: list = field(default_factory=list)
    english: list = field(default_factory=english_msgids)

    def open(self, width: int, height: int = 900, logged_in: bool = True):
        context = self.playwright_browser.new_context(locale="pt-BR", viewport={"width": width, "height": height})
        if self.cookies and logged_in:
            context.add_cookies(self.cookies)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.console_errors = []
        page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
        page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
        self.pages.append(page)
        return page

    def check(self, page, name: str) -> list[str]:
        """The page's problems (empty when none); the screenshot is saved either way."""
        width = page.viewport_size["width"]
        page.screenshot(path=str(ARTIFACTS / f"page_{name}_{width}.png"), full_page=True)
        problems = []
        overflow = page.evaluate(OVERFLOW)
        if overflow["scroll"] > overflow["width"] + 1:
            problems.append(f"{name} at {width}px is {overflow['scroll']}px wide: {overflow['wide']}")
        shown = page.evaluate("document.body.innerText")
        left = [msgid for msgid in self.english if re.search(r"(?<![\w-])" + re.escape(msgid) + r"(?![\w-])", shown)]
        if left:
            problems.append(f"{name}: English on a pt-BR page: {left[:6]}")
        if page.console_errors:
            problems.append(f"{name} at {width}px: console errors {page.console_errors[:4]}")
        return problems


@pytest.fixture
def browser(live_server, monkeypatch):
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing: scripts/setup.sh installs it (apt-get install chromium).")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        kit = Browser(launched, live_server.url.replace("localhost", "127.0.0.1"))
        yield kit
        for page in kit.pages:
            page.context.close()
        launched.close()


def session_cookie(client, base: str) -> list[dict]:
    """The session of a logged-in test client, for the browser (log in before the browser starts)."""
    return [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}]
