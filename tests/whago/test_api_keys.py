import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from whago import services
from whago.models import ApiKey, Role

pytestmark = pytest.mark.django_db


def bearer(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_key_is_shown_once_and_stored_hashed(owner_client):
    response = owner_client.post(reverse("api_keys"), {"name": "ERP"})
    raw = response.context["new_key"]
    assert raw.startswith("whg_") and raw in response.content.decode()
    with scopes_disabled():
        key = ApiKey.objects.get()
    assert key.key_hash == services.hash_api_key(raw) and raw not in (key.key_hash, key.prefix)
    # Never again.
    assert raw not in owner_client.get(reverse("api_keys")).content.decode()


def test_a_key_opens_the_api_for_its_tenant_only(client, make_owner):
    owner, tenant = make_owner(company="Alfa")
    _, raw = services.create_api_key(tenant=tenant, name="ERP", created_by=owner)
    response = client.get(reverse("api_me"), **bearer(raw))
    assert response.status_code == 200
    assert response.json()["tenant"] == "Alfa"
    assert client.get(reverse("api_me"), HTTP_X_API_KEY=raw).status_code == 200


@pytest.mark.parametrize("headers", [{}, bearer("whg_not-a-real-key"), bearer("garbage")])
def test_missing_or_wrong_keys_get_a_json_401(client, headers):
    response = client.get(reverse("api_me"), **headers)
    assert response.status_code == 401
    assert response.json()["error"]["message"]


def test_revoked_keys_stop_working(owner_client, client_factory):
    _, raw = services.create_api_key(tenant=owner_client.tenant, name="ERP", created_by=owner_client.user)
    with scopes_disabled():
        key = ApiKey.objects.get()
    owner_client.post(reverse("revoke_api_key", args=[key.pk]))
    response = client_factory().get(reverse("api_me"), **bearer(raw))
    assert response.status_code == 401
    assert "revogada" in response.json()["error"]["message"]


def test_keys_of_a_suspended_tenant_are_refused_with_their_own_code_and_reason(client, make_owner, settings):
    owner, tenant = make_owner(company="Padaria Central")
    _, raw = services.create_api_key(tenant=tenant, name="ERP", created_by=owner)
    settings.SUPPORT_EMAIL = "ajuda@whago.example"
    services.suspend_tenant(tenant, reason="Pagamento em atraso")
    response = client.get(reverse("api_me"), **bearer(raw))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "tenant_suspended"
    assert "Padaria Central" in error["message"] and "Pagamento em atraso" in error["message"]
    assert "ajuda@whago.example" in error["message"] and "revogada" not in error["message"]
    # A wrong key is still just invalid: the suspension says nothing to someone without a key.
    wrong = client.get(reverse("api_me"), **bearer(raw[:-2] + "xx"))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] != "tenant_suspended"


def test_portal_session_does_not_open_the_api(owner_client):
    assert owner_client.get(reverse("api_me")).status_code == 401


def test_throttling_per_key(client, make_owner, settings):
    settings.API_THROTTLE_RATE = "3/min"
    owner, tenant = make_owner()
    _, first = services.create_api_key(tenant=tenant, name="a", created_by=owner)
    _, second = services.create_api_key(tenant=tenant, name="b", created_by=owner)
    codes = [client.get(reverse("api_me"), **bearer(first)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    throttled = client.get(reverse("api_me"), **bearer(first)).json()["error"]
    assert throttled["code"] == "throttled" and throttled["retry_after"] > 0
    # Another key has its own budget.
    assert client.get(reverse("api_me"), **bearer(second)).status_code == 200


def test_tenant_b_cannot_revoke_tenant_a_keys(client, make_owner):
    owner_a, tenant_a = make_owner()
    owner_b, _ = make_owner()
    key, raw = services.create_api_key(tenant=tenant_a, name="Contabilidade", created_by=owner_a)
    client.force_login(owner_b)
    assert client.post(reverse("revoke_api_key", args=[key.pk])).status_code == 404
    assert client.get(reverse("api_me"), **bearer(raw)).status_code == 200
    assert "Contabilidade" not in client.get(reverse("api_keys")).content.decode()


def test_members_cannot_manage_keys(client, make_owner, make_member):
    _, tenant = make_owner()
    member = make_member(tenant, role=Role.MEMBER)
    client.force_login(member)
    assert client.get(reverse("api_keys")).status_code == 403


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/me/" in schema.content
    assert client.get("/api/docs/").status_code == 200
