"""End to end: a contact's photo through a chip on the simulator image in Docker (plus profile), its signed
webhook to the live app, the download by a real Celery worker from the container's own /api/files/ (the
container's WAHA_BASE_URL), then the photo inline in the conversation."""
import base64

from django.urls import reverse
from django_scopes import scopes_disabled

from chips.models import Message

from .conftest import DOCKER, png_bytes, sim_of, wait_until, working_chip

pytestmark = DOCKER


def test_a_photo_sent_to_a_chip_ends_stored_and_shown_in_the_conversation(worker, owner_client):
    chip = working_chip(owner_client.tenant)
    photo = png_bytes("purple")
    sim_of(chip).call("POST", f"/_sim/sessions/{chip.session_name}/inbound", json={
        "from": "5511988880001", "body": "Chegou assim", "pushName": "Ana",
        "media": {"mimetype": "image/png", "filename": "entrega.png", "data": base64.b64encode(photo).decode()}})

    def stored():
        with scopes_disabled():
            message = Message.objects.filter(chip=chip, direction=Message.Direction.IN).first()
        return message if message is not None and message.media else None

    message = wait_until(stored, message="the photo downloaded by the worker")
    assert message.kind == Message.Kind.IMAGE and message.media.read() == photo and message.error == ""
    page = owner_client.get(reverse("conversation", args=[chip.pk, "+5511988880001"])).content.decode()
    assert f'<img src="{reverse("message_media", args=[message.pk])}"' in page and "Chegou assim" in page
    assert sim_of(chip).call("GET", "/_sim/stats").json()["files"]["served"] == 1
