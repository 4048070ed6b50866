"""API edges found by probing: the schema and docs answer the same with or without a key, and
base64 media up to CHIPS_MAX_MEDIA_BYTES fits in a JSON body (beyond it, a JSON 413)."""
import base64
import json

import pytest

from tests.chips.conftest import placed_chip, set_plan

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_the_api_docs_answer_with_and_without_a_key(client, api, make_owner, path):
    _, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    assert client.get(path).status_code == 200
    assert api(tenant).get(path).status_code == 200


def test_media_up_to_the_limit_fits_in_json_and_beyond_it_is_a_json_413(api, make_owner, settings):
    _, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    chip = placed_chip(tenant)
    client = api(tenant)
    settings.CHIPS_MAX_MEDIA_BYTES = 3 * 1024 * 1024

    def send(size: int):
        body = {"chip": chip.pk, "to": "+5511988887777", "type": "document",
                "media": {"mimetype": "application/pdf", "filename": "a.pdf",
                          "data": base64.b64encode(b"%PDF" + b"0" * (size - 4)).decode()}}
        return client.post("/api/v1/messages/", json.dumps(body), content_type="application/json")

    accepted = send(2 * 1024 * 1024)  # ~2.7 MB of JSON: above Django's default 2.5 MB
    assert accepted.status_code == 201, accepted.content[:300]
    too_big = client.post("/api/v1/messages/", "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10),
                          content_type="application/json")
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "too_large"
