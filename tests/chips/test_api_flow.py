"""The REST API end to end on Docker with the simulator image: chips, QR, pairing code, messages, proxy."""
import base64
import io
from datetime import date

from django_scopes import scopes_disabled
from PIL import Image
from pyzbar.pyzbar import decode

from chips.models import Chip, Message
from proxies import services as proxy_services
from proxies.models import ProxyAssignment, ProxyProvider
from tests.waha.conftest import waha_info

from .conftest import DOCKER, chip_row, set_plan, sim_of, wait_until

pytestmark = DOCKER


def test_chips_and_messages_through_the_api_with_a_proxy(worker, make_owner, api, owner_client):
    with scopes_disabled():
        ProxyProvider.objects.create(name="gw", kind=ProxyProvider.Kind.GATEWAY, host="127.0.0.1", port=1080,
                                     username="cliente", password="s3nh@-do-proxy", country="BR")
    tenant = owner_client.tenant
    set_plan(tenant, "BUSINESS")
    client = api(tenant)

    created = client.post("/api/v1/chips/", {"alias": "Integração"}, content_type="application/json")
    assert created.status_code == 201, created.content
    chip_id = created.json()["id"]
    assert created.json()["status"] == "PROVISIONING" and created.json()["qr_url"] is None

    def status_is(wanted):
        response = client.get(f"/api/v1/chips/{chip_id}/")
        if response.status_code == 429:  # polled faster than the key's throttle allows: ask again later
            return None
        body = response.json()
        return body if body["status"] == wanted else None

    body = wait_until(lambda: status_is("SCAN_QR_CODE"), 30, 0.3, message="SCAN_QR_CODE through the API")
    assert body["qr_url"] == f"http://testserver/api/v1/chips/{chip_id}/qr.png"

    # The session runs through the assigned proxy; the tenant sees the egress, never its password.
    chip = chip_row(chip_id)
    assignment = proxy_services.assignment_for(chip.session_name)
    config = waha_info(chip.waha_session)["config"]
    assert config["proxy"] == proxy_services.waha_proxy_config(assignment)
    assert config["proxy"]["password"] == "s3nh@-do-proxy"
    page = owner_client.get(f"/chips/{chip_id}/").content.decode()
    assert "gw" in page and "s3nh@-do-proxy" not in page and config["proxy"]["username"] not in page

    # A new sticky session (the proxies app rotated it): the session gets the new egress.
    rotated = proxy_services.rotate(assignment)
    wait_until(lambda: waha_info(chip.waha_session)["config"]["proxy"]["username"]
               == proxy_services.waha_proxy_config(rotated)["username"], message="the new proxy in WAHA")
    wait_until(lambda: sim_of(chip).sessions()[chip.session_name]["status"] == "SCAN_QR_CODE", message="restarted")
    wait_until(lambda: status_is("SCAN_QR_CODE"), message="SCAN_QR_CODE after the proxy change")

    # QR as PNG and as a data URI: the same code.
    png = client.get(f"/api/v1/chips/{chip_id}/qr.png")
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    uri = client.get(f"/api/v1/chips/{chip_id}/qr").json()["data_uri"]
    assert uri.startswith("data:image/png;base64,")
    from_uri = decode(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))[0].data
    assert from_uri == decode(Image.open(io.BytesIO(png.content)))[0].data

    # Link with a pairing code instead of the QR.
    connect = client.post(f"/api/v1/chips/{chip_id}/connect", {"method": "code", "phone_number": "(11) 97777-6666"},
                          content_type="application/json")
    assert connect.status_code == 200, connect.content
    code = connect.json()["code"]
    assert code
    sim = sim_of(chip)
    sim.scan(chip.session_name, "5511977776666", "API Store", code=code)
    body = wait_until(lambda: status_is("WORKING"), message="WORKING through the API")
    assert (body["phone"], body["push_name"]) == ("+5511977776666", "API Store")

    # Messages: a text (JSON) and a document (multipart), followed to DELIVERED.
    text = client.post("/api/v1/messages/", {"chip": chip_id, "to": "+55 (21) 99876-5432", "text": "Pedido enviado"},
                       content_type="application/json")
    assert text.status_code == 201, text.content
    document = io.BytesIO(b"%PDF-1.4 nota fiscal")
    document.name = "nota.pdf"
    upload = client.post("/api/v1/messages/", {"chip": chip_id, "to": "21998765432", "type": "document",
                                               "text": "Sua nota", "file": document})
    assert upload.status_code == 201, upload.content
    for sent in (text.json(), upload.json()):
        wait_until(lambda sent=sent: client.get(f"/api/v1/messages/{sent['id']}/").json()["status"] == "DELIVERED",
                   message="DELIVERED through the API")
    detail = client.get(f"/api/v1/messages/{upload.json()['id']}/").json()
    assert (detail["type"], detail["media_name"], detail["body"]) == ("document", "nota.pdf", "Sua nota")
    assert detail["waha_id"].startswith("true_5521998765432@c.us_") and detail["sent_at"] and detail["delivered_at"]
    assert [m["chatId"] for m in sim.sent(chip.session_name)] == ["5521998765432@c.us"] * 2

    sim.inbound(chip.session_name, "5521998765432", "Recebi, obrigado")
    wait_until(lambda: client.get("/api/v1/messages/?direction=IN").json()["count"] == 1, message="inbound")
    today = date.today().isoformat()
    listed = client.get(f"/api/v1/messages/?chip={chip_id}&status=DELIVERED&direction=OUT&peer=21998765432"
                        f"&since={today}&until={today}").json()
    assert {m["id"] for m in listed["results"]} == {text.json()["id"], upload.json()["id"]}
    assert client.get("/api/v1/messages/?peer=2199876").json()["count"] == 3
    assert client.get("/api/v1/messages/?since=2000-01-01&until=2000-01-02").json()["count"] == 0
    assert client.get("/api/v1/messages/?status=NOPE").status_code == 400

    # Disconnect, restart (reconnects: a new QR), delete.
    assert client.post(f"/api/v1/chips/{chip_id}/disconnect").json()["status"] == "DISCONNECTED"
    restarted = client.post(f"/api/v1/chips/{chip_id}/restart")
    assert restarted.status_code == 200 and restarted.json()["status"] in ("STARTING", "SCAN_QR_CODE")
    wait_until(lambda: status_is("SCAN_QR_CODE"), message="a new QR after reconnecting")
    assert client.delete(f"/api/v1/chips/{chip_id}/").status_code == 204
    assert client.get(f"/api/v1/chips/{chip_id}/").status_code == 404
    assert chip.session_name not in sim.sessions()
    with scopes_disabled():
        assert ProxyAssignment.objects.get(pk=assignment.pk).released_at is not None
        assert Message.objects.filter(chip_id=chip_id).count() == 3
        assert Chip.all_objects.get(pk=chip_id).deleted_at is not None
