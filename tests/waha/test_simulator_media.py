"""Received media in the simulator, as WAHA 2024.10.8's MediaManager and local storage do it (both tiers:
src/core/media/MediaManager.ts, local/MediaLocalStorage.ts, local/media.local.storage.module.ts)."""
import base64

import pytest
import requests

PHOTO = b"\x89PNG\r\n\x1a\nnot-really-a-png"


def send_photo(sim, session: str, mimetype: str = "image/png") -> dict:
    response = sim.post(f"/_sim/sessions/{session}/inbound", {
        "from": "5511988887777", "body": "foto", "media": {"mimetype": mimetype, "filename": "f.png",
                                                           "data": base64.b64encode(PHOTO).decode()}})
    assert response.status_code == 201, response.text
    return response.json()


def test_plus_saves_the_file_links_it_in_the_message_and_serves_it_behind_the_key(simulator_factory):
    sim = simulator_factory(profile="plus", env={"WAHA_BASE_URL": "http://waha.internal:3000/"})
    sim.create_working("s1")
    message = send_photo(sim, "s1")
    short_id = message["id"].rsplit("_", 1)[-1]
    url = f"http://waha.internal:3000/api/files/s1/{short_id}.png"
    assert message["hasMedia"] is True and message["mediaUrl"] == url
    assert message["media"] == {"url": url, "filename": "f.png", "mimetype": "image/png"}
    assert message["_data"]["message"] == {"imageMessage": {"mimetype": "image/png", "caption": "foto"}}
    path = url[len("http://waha.internal:3000"):]
    answer = sim.get(path)
    assert answer.status_code == 200 and answer.content == PHOTO and answer.headers["Content-Type"] == "image/png"
    assert requests.get(sim.url(path), timeout=10).status_code == 401  # no key
    assert sim.get("/api/files/s1/unknown.png").status_code == 404


@pytest.mark.parametrize("env", [{"WHATSAPP_DOWNLOAD_MEDIA": "false"}, {"WHATSAPP_FILES_MIMETYPES": "audio/"}])
def test_a_file_not_downloaded_has_a_null_url(simulator_factory, env):
    sim = simulator_factory(profile="plus", env=env)
    sim.create_working("s1")
    message = send_photo(sim, "s1")
    assert message["hasMedia"] is True and message["mediaUrl"] is None
    assert message["media"] == {"url": None, "filename": "f.png", "mimetype": "image/png"}
    assert sim.get("/_sim/stats").json()["files"]["stored"] == 0


def test_core_2024_downloads_too_at_its_hostname_and_serves_without_a_key(simulator_factory):
    sim = simulator_factory(profile="core-2024.10", env={"WHATSAPP_API_HOSTNAME": "127.0.0.1"})
    sim.post("/api/sessions/default/start")
    sim.wait_status("default", "SCAN_QR_CODE")
    assert sim.post("/_sim/sessions/default/scan", {"phone": "5511999990000"}).status_code == 201
    message = send_photo(sim, "default")
    assert message["media"]["url"].startswith(f"http://127.0.0.1:{sim.port}/api/files/default/")
    assert requests.get(message["media"]["url"], timeout=10).content == PHOTO
