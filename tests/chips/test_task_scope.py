"""chips' tasks that work for one tenant are TenantTasks (whago.tasks): queued with tenant_id=, their body
runs in that tenant's scope, so its queries see that tenant's rows only; a task queued in its old form
(before the deploy that added tenant_id) runs in the tenant of the row it names.

The sends go to the simulator (plus profile) as a real process on loopback; the tasks run with
Task.apply() in the test's process, as a worker would run them."""
import pytest
from django_scopes import get_scope, scopes_disabled

from chips import outgoing, sending
from chips.models import Message, WebhookDelivery
from tests.waha.conftest import simulator_factory  # noqa: F401 - fixture

from .conftest import placed_chip

pytestmark = pytest.mark.django_db

SENT = Message.Status.SENT
QUEUED = Message.Status.QUEUED


@pytest.fixture
def two_chips(simulator_factory, make_owner):  # noqa: F811
    """A WORKING chip of each of two companies (Alfa, Beta), both on one simulator."""
    sim = simulator_factory(profile="plus", env={"WHATSAPP_API_HOSTNAME": "127.0.0.1"})
    chips = []
    for n, company in enumerate(("Alfa", "Beta"), start=1):
        _user, tenant = make_owner(company=company)
        chip = placed_chip(tenant, phone=f"+551199999000{n}")
        container = chip.waha_session.container
        with scopes_disabled():
            container.url, container.api_key = sim.base_url, sim.api_key
            container.save(update_fields=["url", "api_key"])
        sim.create_working(chip.session_name, phone=f"551199999000{n}")
        chips.append(chip)
    return chips


def queued(chip, body: str) -> Message:
    with scopes_disabled():
        return Message.objects.create(tenant_id=chip.tenant_id, chip=chip, direction=Message.Direction.OUT,
                                      peer="+5511988887777", body=body, status=QUEUED)


def row(message: Message) -> Message:
    with scopes_disabled():
        return Message.objects.get(pk=message.pk)


def untouched(message: Message) -> bool:
    found = row(message)
    return (found.status, found.attempts, found.lease_token, found.waha_id) == (QUEUED, 0, None, "")


def test_a_send_task_sees_only_its_tenants_messages(two_chips):
    alfa_chip, beta_chip = two_chips
    alfa_message, beta_message = queued(alfa_chip, "Alfa"), queued(beta_chip, "Beta")

    # Alfa's task is handed Beta's message id too: its claim, run in Alfa's scope, does not see it.
    result = sending.send_many.apply(args=([beta_message.pk, alfa_message.pk],),
                                     kwargs={"tenant_id": alfa_chip.tenant_id})

    assert result.successful() and get_scope() == {}
    sent = row(alfa_message)
    assert sent.status == SENT and sent.waha_id and sent.attempts == 1
    assert untouched(beta_message)

    # Beta's own task sends it.
    assert sending.send_one.apply(args=(beta_message.pk,), kwargs={"tenant_id": beta_chip.tenant_id}).successful()
    assert row(beta_message).status == SENT


def test_a_task_queued_in_its_old_form_runs_in_the_tenant_of_its_row(two_chips):
    """Queued before the deploy (no tenant_id): the tenant is read from the message it names."""
    alfa_chip, beta_chip = two_chips
    beta_message = queued(beta_chip, "Beta")

    assert sending.send_one.apply(args=(beta_message.pk,)).successful()
    assert row(beta_message).status == SENT

    # An old sweep's batch could mix tenants: the first message's tenant sends its own, the others stay
    # QUEUED and free for the send sweep to give them a task of their tenant.
    alfa_message, other_beta = queued(alfa_chip, "Alfa"), queued(beta_chip, "Beta 2")
    assert sending.send_many.apply(args=([alfa_message.pk, other_beta.pk],)).successful()
    assert row(alfa_message).status == SENT
    assert untouched(other_beta)

    # A row gone since: nothing to run, no tenant guessed.
    assert sending.send_one.apply(args=(0,)).get() is None


def test_a_webhook_delivery_task_sees_only_its_tenants_deliveries(two_chips):
    alfa_chip, beta_chip = two_chips
    with scopes_disabled():
        theirs = WebhookDelivery.objects.create(tenant_id=beta_chip.tenant_id, event="ping",
                                                url="http://127.0.0.1:9/hook", payload={"event": "ping"})

    outgoing.deliver_webhook.apply(args=(theirs.pk,), kwargs={"tenant_id": alfa_chip.tenant_id})

    with scopes_disabled():
        theirs.refresh_from_db()
    assert (theirs.status, theirs.attempts) == (WebhookDelivery.Status.PENDING, 0)  # Alfa's task never saw it
