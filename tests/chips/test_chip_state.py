"""The chip's state machine lives on the model (issue 19, point 5): Chip.allowed_actions()/can() say what
each status allows, Chip.move_to() is the one writer of a chip's status and refuses moves outside
Chip.TRANSITIONS; chips.lifecycle refuses through can(), and the portal's buttons are the model's answer."""
import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from chips import errors, lifecycle
from chips.models import Chip
from tests.chips.conftest import chip_row, placed_chip, set_plan

pytestmark = pytest.mark.django_db

S = Chip.Status
# What the chip page offers in each status (the buttons it had when the template decided by itself).
OFFERED = {
    S.PROVISIONING: set(),
    S.STARTING: {"disconnect"},
    S.SCAN_QR_CODE: {"restart", "disconnect", "pair"},
    S.WORKING: {"restart", "disconnect", "send"},
    S.FAILED: {"restart", "disconnect"},
    S.STOPPED: {"connect", "disconnect"},
    S.DISCONNECTED: {"connect"},
}
BUTTONS = {"connect": "chip_connect", "restart": "chip_restart", "disconnect": "chip_disconnect"}


@pytest.mark.parametrize("status", list(OFFERED))
def test_each_status_allows_its_actions(status):
    chip = Chip(status=status)
    assert chip.allowed_actions() == OFFERED[status]
    assert all(chip.can(action) == (action in OFFERED[status]) for action in Chip.Action.values)
    chip.deleted_at = "2026-01-01T00:00:00Z"
    assert chip.allowed_actions() == frozenset()


def test_send_is_allowed_to_connected_chips_only():
    assert Chip.statuses_allowing(Chip.Action.SEND) == [S.WORKING]
    assert set(Chip.statuses_allowing(Chip.Action.CONNECT)) == {S.STOPPED, S.DISCONNECTED}


def test_move_to_writes_allowed_moves_and_refuses_the_others(make_owner):
    _, tenant = make_owner()
    chip = placed_chip(tenant, status=S.DISCONNECTED)
    with scopes_disabled():
        Chip.all_objects.filter(pk=chip.pk).update(problem=Chip.Problem.SESSION_CLOSED, last_error="x")
    chip = chip_row(chip.pk)

    # Logged out on purpose: the session's own QR code or failure does not move the chip.
    for status in (S.SCAN_QR_CODE, S.FAILED):
        with pytest.raises(Chip.IllegalMove):
            chip.move_to(status)
        assert chip_row(chip.pk).status == S.DISCONNECTED
    with pytest.raises(Chip.IllegalMove):
        chip.move_to("NOT_A_STATUS")

    assert chip.move_to(S.STARTING, last_error="") == S.DISCONNECTED
    stored = chip_row(chip.pk)
    assert stored.status == S.STARTING and stored.status_changed_at is not None
    assert (stored.problem, stored.last_error) == ("", "")  # a new error text (none) drops the old code
    # Staying in a status is always allowed (a repeated event); PROVISIONING comes back from nowhere but
    # connecting a chip whose session was lost.
    assert chip.move_to(S.STARTING) == S.STARTING
    chip.move_to(S.WORKING)
    with pytest.raises(Chip.IllegalMove):
        chip.move_to(S.PROVISIONING)
    assert chip_row(chip.pk).status == S.WORKING


def test_session_events_go_through_the_state_machine(make_owner):
    _, tenant = make_owner()
    chip = placed_chip(tenant, status=S.DISCONNECTED)
    lifecycle.apply_session_status(tenant, chip.session_name, S.SCAN_QR_CODE, None, 1)
    assert chip_row(chip.pk).status == S.DISCONNECTED
    lifecycle.apply_session_status(tenant, chip.session_name, S.WORKING, {"id": "5511999990001@c.us"}, 2)
    assert chip_row(chip.pk).status == S.WORKING  # the number linked again
    with scopes_disabled():
        Chip.all_objects.filter(pk=chip.pk).update(suspended_at="2026-01-01T00:00:00Z")
    lifecycle.apply_session_status(tenant, chip.session_name, S.WORKING, None, 3)
    assert chip_row(chip.pk).status == S.STOPPED  # stopped by the plan limit until it fits again


def test_lifecycle_refuses_what_the_status_does_not_allow(make_owner):
    """Refused before WAHA is called (these chips have no WAHA runtime: a call would fail otherwise)."""
    _, tenant = make_owner()
    starting = placed_chip(tenant, status=S.STARTING)
    with pytest.raises(errors.ChipNotReady) as refused:
        lifecycle.restart(starting)
    assert refused.value.code == "chip_not_ready"
    assert refused.value.message == "Reiniciar não é possível enquanto o chip está Iniciando."
    assert chip_row(starting.pk).status == S.STARTING

    provisioning = placed_chip(tenant, status=S.PROVISIONING, alias="Nova")
    with pytest.raises(errors.ChipNotReady):
        lifecycle.disconnect(provisioning)
    assert chip_row(provisioning.pk).status == S.PROVISIONING

    working = placed_chip(tenant, status=S.WORKING, alias="Loja")
    with pytest.raises(errors.ChipNotReady):
        lifecycle.qr_png(working)
    with pytest.raises(errors.ChipNotReady):
        lifecycle.request_pairing_code(working, "11999990002")
    # Connecting a chip that is connected, or being linked, has nothing to do.
    assert lifecycle.connect(working).status == S.WORKING
    assert lifecycle.connect(provisioning).status == S.PROVISIONING
    # Disconnecting a number logged out already, too.
    disconnected = placed_chip(tenant, status=S.DISCONNECTED, alias="Fora")
    assert lifecycle.disconnect(disconnected).status == S.DISCONNECTED


def test_the_api_refuses_with_a_conflict(make_owner, api):
    _, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    chip = placed_chip(tenant, status=S.STARTING)
    response = api(tenant).post(f"/api/v1/chips/{chip.pk}/restart")
    assert response.status_code == 409 and response.json()["error"]["code"] == "chip_not_ready"
    assert chip_row(chip.pk).status == S.STARTING


@pytest.mark.parametrize("status", list(OFFERED))
def test_the_chip_page_shows_only_the_allowed_buttons(owner_client, status):
    chip = placed_chip(owner_client.tenant, status=status)
    for page in (reverse("chip_detail", args=[chip.pk]), reverse("chip_status", args=[chip.pk])):
        html = owner_client.get(page).content.decode()
        shown = {action for action, name in BUTTONS.items() if reverse(name, args=[chip.pk]) in html}
        assert shown == OFFERED[status] & set(BUTTONS), (page, status)
        assert ('id="chip-qr"' in html) == (status == S.SCAN_QR_CODE)
    rows = owner_client.get(reverse("chip_list")).content.decode()
    assert ("Ler o QR code" in rows) == (status == S.SCAN_QR_CODE)
    assert (reverse("chip_inbox", args=[chip.pk]) in rows) == (status == S.WORKING)
