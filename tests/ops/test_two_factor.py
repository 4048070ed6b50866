"""Two-factor login of the operators' console (ADMIN_REQUIRE_2FA, django-otp's TOTP).

Operators act on every tenant's containers: with the setting on (ops_settings turns it on for every test
here, as production does) a correct password is not enough — the admin wants the code of the operator's
authenticator app. The codes are computed here from the device's secret as an authenticator app does
(RFC 6238), independently of django-otp.
"""
import base64
import hashlib
import hmac
import io
import struct
import time
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_scopes import scopes_disabled

from tests.whago.test_settings import PRODUCTION, run_manage
from waha.models import ContainerStatus, WahaContainer
from whago.models import AuditLog, User

pytestmark = pytest.mark.django_db

PASSWORD = "Zebra-Cachoeira-2026!"


def app_code(secret: bytes, at: float | None = None) -> str:
    """The 6 digits an authenticator app shows for this secret (TOTP: HMAC-SHA1, 30 s steps)."""
    counter = int((time.time() if at is None else at) // 30)
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def wrong_code(secret: bytes) -> str:
    """Six digits that are no code of this secret in the accepted window (the step before, now, after)."""
    valid = {app_code(secret, time.time() + drift) for drift in (-60, -30, 0, 30, 60)}
    return next(code for code in (f"{n:06d}" for n in range(123456, 1_000_000, 7919)) if code not in valid)


def operator(email: str) -> User:
    return User.objects.create_superuser(email=email, password=PASSWORD, full_name="Operadora")


def with_authenticator(user: User) -> bytes:
    """The operator's authenticator, made by the management command; returns the secret from the printed URI."""
    out = io.StringIO()
    call_command("operator_totp", user.email, "--no-qr", stdout=out)
    uri = next(word for word in out.getvalue().split() if word.startswith("otpauth://"))
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def admin_login(client, email: str, code: str | None):
    data = {"username": email, "password": PASSWORD, "next": "/admin/"}
    if code is not None:
        data["otp_token"] = code
    return client.post(reverse("admin:login"), data)


def console_pages(container: WahaContainer, add: bool = True) -> list[str]:
    """Every list (and add) page of the console, its own pages, and the operator's /status/."""
    pages = ["/admin/", reverse("ops_dashboard"), reverse("admin:password_change"), reverse("admin:jsi18n"),
             reverse("admin:waha_wahacontainer_change", args=[container.pk]),
             reverse("admin:waha_wahacontainer_logs", args=[container.pk]),
             reverse("admin:waha_wahacontainer_orphans"),
             reverse("admin:whago_tenant_change", args=[container.tenant_id]), reverse("status")]
    for model in admin.site._registry:
        opts = model._meta
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        if add:
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    return pages


def assert_kept_out(client, container: WahaContainer) -> None:
    for url in console_pages(container):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/admin/login/"), (url, response.status_code)
    # Nor can it act on a container.
    response = client.post(reverse("admin:waha_wahacontainer_action", args=[container.pk, "stop"]), {"post": "yes"})
    assert response.status_code == 302 and response.url.startswith("/admin/login/")
    with scopes_disabled():
        assert not AuditLog.objects.exists()
        assert WahaContainer.objects.get(pk=container.pk).status == ContainerStatus.RUNNING


def test_a_correct_password_without_the_code_reaches_no_admin_page(client, container):
    user = operator("ana@whago.test")
    secret = with_authenticator(user)

    response = admin_login(client, user.email, None)
    assert response.status_code == 200
    assert "Digite o código de 6 dígitos do seu aplicativo autenticador." in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert_kept_out(client, container)

    response = admin_login(client, user.email, wrong_code(secret))
    assert response.status_code == 200
    assert "Código errado ou expirado" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert_kept_out(client, container)


def test_an_operator_without_an_authenticator_cannot_log_in(client, container):
    user = operator("bia@whago.test")
    response = admin_login(client, user.email, "123456")
    assert response.status_code == 200
    assert "operator_totp" in response.content.decode()
    assert_kept_out(client, container)


def test_a_session_from_the_portal_login_is_not_enough(client, container):
    """Logged in with the password only (the portal's login form): the console still asks for the code."""
    user = operator("caio@whago.test")
    with_authenticator(user)
    response = client.post(reverse("login"), {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)
    assert_kept_out(client, container)
    page = client.get(reverse("admin:login")).content.decode()
    assert 'id="second-factor-needed"' in page and 'name="otp_token"' in page


def test_the_code_of_the_authenticator_opens_the_console(client, container):
    user = operator("davi@whago.test")
    secret = with_authenticator(user)

    response = admin_login(client, user.email, app_code(secret))
    assert response.status_code == 302 and response.url == "/admin/"
    for url in console_pages(container, add=False):
        if url == reverse("status"):
            continue  # pings a worker (none here); its gate is the same check
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)


def test_guessing_codes_is_throttled(client, settings):
    """After a wrong code, django-otp refuses even the right one for a while (doubling with each failure)."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 3600
    user = operator("edu@whago.test")
    secret = with_authenticator(user)
    admin_login(client, user.email, wrong_code(secret))
    response = admin_login(client, user.email, app_code(secret))
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert TOTPDevice.objects.get(user=user).throttling_failure_count >= 1


def test_without_the_setting_the_password_is_enough(client, settings):
    """The embedded mode of `make run`: its printed demo login opens the console."""
    settings.ADMIN_REQUIRE_2FA = False
    user = operator("fabi@whago.test")
    assert "otp_token" not in client.get(reverse("admin:login")).content.decode()
    response = admin_login(client, user.email, None)
    assert response.status_code == 302 and response.url == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_the_command_makes_one_authenticator_per_operator(make_owner):
    user = operator("gil@whago.test")
    out = io.StringIO()
    call_command("operator_totp", "GIL@whago.test", stdout=out)
    text = out.getvalue()
    uri = next(word for word in text.split() if word.startswith("otpauth://"))
    parsed = urlparse(uri)
    assert parsed.netloc == "totp" and unquote(parsed.path) == "/WHAGO:gil@whago.test"
    assert parse_qs(parsed.query)["issuer"] == ["WHAGO"]
    assert "█" in text or "▀" in text  # the QR code, drawn in the terminal
    first = TOTPDevice.objects.get(user=user)
    assert first.confirmed
    secret = parse_qs(parsed.query)["secret"][0]
    assert base64.b32decode(secret + "=" * (-len(secret) % 8)) == first.bin_key

    with pytest.raises(CommandError, match="already has an authenticator"):
        call_command("operator_totp", user.email, stdout=io.StringIO())
    call_command("operator_totp", user.email, "--replace", "--no-qr", stdout=io.StringIO())
    assert TOTPDevice.objects.filter(user=user).count() == 1
    assert TOTPDevice.objects.get(user=user).key != first.key

    owner, _ = make_owner()
    with pytest.raises(CommandError, match="not an operator"):
        call_command("operator_totp", owner.email, stdout=io.StringIO())
    with pytest.raises(CommandError, match="No user"):
        call_command("operator_totp", "ninguem@whago.test", stdout=io.StringIO())


def test_on_by_default_in_production_off_in_the_embedded_mode(tmp_path):
    show = "from django.conf import settings as s; print(s.ADMIN_REQUIRE_2FA)"
    production = run_manage("shell", "-v", "0", "-c", show, **PRODUCTION)
    assert production.returncode == 0, production.stderr
    assert production.stdout.split() == ["True"]
    embedded = run_manage("shell", "-v", "0", "-c", show, WHAGO_VAR_DIR=str(tmp_path), ADMIN_REQUIRE_2FA="")
    assert embedded.returncode == 0, embedded.stderr
    assert embedded.stdout.split() == ["False"]
