import pytest
from django.urls import reverse

from tests.conftest import STRONG_PASSWORD

pytestmark = pytest.mark.django_db


def test_login_works_with_the_right_password(client, make_owner):
    user, _ = make_owner()
    response = client.post(reverse("login"), {"username": user.email, "password": STRONG_PASSWORD})
    assert response.status_code == 302
    assert response.url == reverse("dashboard")


def test_wrong_password_explains_in_portuguese(client, make_owner):
    user, _ = make_owner()
    response = client.post(reverse("login"), {"username": user.email, "password": "errada"})
    assert response.status_code == 200
    assert "Senha ou e-mail incorretos" in response.content.decode()


def test_lockout_after_repeated_failures_even_with_the_right_password(client, make_owner, settings):
    user, _ = make_owner()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": user.email, "password": "errada"})

    response = client.post(reverse("login"), {"username": user.email, "password": STRONG_PASSWORD})

    assert response.status_code == 429
    page = response.content.decode()
    assert "Conta temporariamente bloqueada" in page
    assert "_auth_user_id" not in client.session
    # How long, from the settings; and no promise that a password reset lifts it (it does not).
    assert "bloqueado por 30 minutos" in page
    assert "não encerra o bloqueio antes" in page and "ou redefina" not in page


def test_the_lockout_page_follows_the_cool_off_setting(client, make_owner, settings):
    from datetime import timedelta

    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)
    user, _ = make_owner()
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        response = client.post(reverse("login"), {"username": user.email, "password": "errada"})
    assert response.status_code == 429 and "bloqueado por 1 minuto " in response.content.decode()


def test_failures_on_one_account_do_not_lock_another(client, make_owner, settings):
    victim, _ = make_owner()
    other, _ = make_owner()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": victim.email, "password": "errada"})
    response = client.post(reverse("login"), {"username": other.email, "password": STRONG_PASSWORD})
    assert response.status_code == 302
