"""WAHA sessions: placed in a container, configured (webhook, proxy, metadata), started,
stopped, paired and used to send; resumed with their config after the container restarts.

Every call is idempotent where WAHA allows it: "already started" is success, an existing
session is updated instead of created, and a server that forgets configs (Core) is given
the config again before each start.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from whago.models import Tenant

from .alerts import open_alert
from .client import FeatureUnavailable, SessionAlreadyExists, SessionNotFound, SessionNotReady
from .containers import WahaManagerError, client_for, ensure_started, restart_runtime, wait_ready
from .models import AlertRule, SessionStatus, WahaContainer, WahaSession
from .placement import lock_tenant, place, placing

log = logging.getLogger(__name__)

DEFAULT_EVENTS = ["session.status", "message", "message.ack"]
# NOWEB keeps chats and messages only with its store on (else GET /api/{s}/chats/{c}/messages is a
# 400): enabled, without the full history sync (fullSync would pull the phone's whole history).
# markOnline is given as WAHA fills it in, so the config WAHA echoes equals the one WHAGO keeps.
NOWEB_CONFIG = {"store": {"enabled": True, "fullSync": False}, "markOnline": True}
# A pairing code is asked of WAHA with its own bound: Core may hang on it while STARTING.
REQUEST_CODE_TIMEOUT = (3.05, 15)


class ProxyNotSupported(WahaManagerError):
    """The session's proxy uses a scheme this WAHA server cannot use (e.g. SOCKS5 on 2024.10)."""


def session_config(
    container: WahaContainer,
    name: str,
    proxy: dict | None = None,
    metadata: dict | None = None,
    events: Iterable[str] = DEFAULT_EVENTS,
) -> dict:
    """WAHA's session config: our webhook (URL with the container's token; signed where the
    server signs), proxy, metadata, and NOWEB's message store (so a message in doubt can be looked
    up by chat: chat_messages). Refuses a proxy scheme the server cannot use."""
    webhook: dict[str, Any] = {"url": container.webhook_url, "events": list(events)}
    if container.signs_webhooks:
        webhook["hmac"] = {"key": container.webhook_key}
        webhook["retries"] = {"policy": "exponential", "delaySeconds": 2, "attempts": 10}
    config: dict[str, Any] = {
        "webhooks": [webhook],
        "metadata": {"whago.session": name, "whago.tenant": str(container.tenant_id or ""), **(metadata or {})},
    }
    if (container.whatsapp_engine or "NOWEB").upper() == "NOWEB":
        config["noweb"] = copy.deepcopy(NOWEB_CONFIG)
    if proxy:
        proxy = {k: v for k, v in proxy.items() if k in ("server", "username", "password") and v}
        scheme = (urlsplit(proxy.get("server", "")).scheme or "http").lower()
        if scheme not in container.proxy_schemes:
            raise ProxyNotSupported(
                f"WAHA {container.version or '?'} on {container.name} cannot use {scheme} proxies "
                f"(it takes {', '.join(sorted(container.proxy_schemes))}): give the provider an HTTP endpoint."
            )
        config["proxy"] = proxy
    return config


def create_session(
    tenant: Tenant | int,
    name: str,
    proxy: dict | None = None,
    metadata: dict | None = None,
    start: bool = True,
    events: Iterable[str] = DEFAULT_EVENTS,
) -> WahaSession:
    """Place a session (in the tenant's container, created if needed, or on an external server)
    and create it in WAHA with its config, started when asked.

    proxy: {"server": "scheme://host:port", "username": ..., "password": ...} or None.
    Idempotent: calling it again for the same name sends the config again (safe to retry).
    """
    with scopes_disabled():
        with placing(), transaction.atomic():
            locked = lock_tenant(tenant)
            session = WahaSession.objects.filter(tenant=locked, name=name).select_related("container").first()
            if session is None:
                container = place(locked)
                session = WahaSession.objects.create(
                    tenant=locked,
                    container=container,
                    name=name,
                    remote_name="default" if container.is_core else name,
                    should_run=start,
                )
                session.container = container
        container = session.container
        ensure_started(container)
        wait_ready(container)
        _follow_tier(session)
        try:
            config = session_config(container, name, proxy=proxy, metadata=metadata, events=events)
        except ProxyNotSupported as exc:
            open_alert(container.name, AlertRule.PROXY, str(exc), container, None)
            raise
        _keep_config(session, config)
        apply_info(session, _configure(session, config, start))
        return session


def _follow_tier(session: WahaSession) -> None:
    """A server read as Core after the session was placed: its one session is named "default"."""
    if not session.container.is_core or session.remote_name == "default":
        return
    try:
        with scope(tenant=session.tenant_id), transaction.atomic():
            WahaSession.objects.filter(pk=session.pk).update(remote_name="default")
    except IntegrityError as exc:
        raise WahaManagerError(
            f"{session.container.name} is WAHA Core (one session) and already holds another session."
        ) from exc
    session.remote_name = "default"


def _keep_config(session: WahaSession, config: dict) -> None:
    session.config = json.dumps(config, sort_keys=True)
    with scope(tenant=session.tenant_id):
        WahaSession.objects.filter(pk=session.pk).update(config=session.config)


def _configure(session: WahaSession, config: dict, start: bool) -> dict:
    """Create the session in WAHA, or update the one there; then start it if asked."""
    client = client_for(session.container)
    if session.container.is_core:
        # Core's only session exists from the start ("default", STOPPED, no config): update it,
        # unless it already runs with this very config (a retried task). Core restarts a running
        # session on update, and one restarted while its connection attempt is pending can bring
        # the whole 2024.10 server down (docs/waha.md).
        try:
            current = client.get_session(session.remote_name) or {}
        except SessionNotFound:
            return client.create_session(session.remote_name, config, start=start)
        if current.get("config") == config and current.get("status") not in ("STOPPED", "FAILED", None):
            return current
        info = client.update_session(session.remote_name, config)
    else:
        try:
            return client.create_session(session.remote_name, config, start=start)
        except SessionAlreadyExists:
            info = client.update_session(session.remote_name, config)
    if start:
        info = client.start_session(session.remote_name)  # "already started" is success
    return info


def get_session(tenant: Tenant | int, name: str) -> WahaSession:
    """The session named `name` of a tenant (raises WahaSession.DoesNotExist)."""
    with scope(tenant=getattr(tenant, "pk", tenant)):
        return WahaSession.objects.select_related("container").get(name=name)


def apply_info(session: WahaSession, info: dict | None) -> None:
    """Record what WAHA says about a session (status, account)."""
    if not isinstance(info, dict):
        return
    changes: dict[str, Any] = {}
    if info.get("status") in SessionStatus.values:
        changes["status"] = info["status"]
    me = info.get("me")
    if isinstance(me, dict) and me.get("id"):
        changes["me_id"] = str(me["id"])[:64]
        changes["me_push_name"] = str(me.get("pushName") or "")[:128]
    if changes:
        for key, value in changes.items():
            setattr(session, key, value)
        with scope(tenant=session.tenant_id):
            WahaSession.objects.filter(pk=session.pk).update(**changes, updated_at=timezone.now())


def _session_call(session: WahaSession, method: str, *args, **kwargs):
    return getattr(client_for(session.container), method)(session.remote_name, *args, **kwargs)


def _give_back_config(client, session: WahaSession, info: dict | None = None) -> None:
    """Give WAHA the session's config again where it has none (Core forgets configs when it
    restarts). A config WAHA still holds is left alone: an update restarts a session."""
    if not session.config:
        return
    if info is None:
        info = client.get_session(session.remote_name) or {}
    if not info.get("config"):
        client.update_session(session.remote_name, json.loads(session.config))


def start_session(session: WahaSession) -> dict:
    """Start the session, with its config given again where WAHA forgot it."""
    client = client_for(session.container)
    _give_back_config(client, session)
    info = client.start_session(session.remote_name)
    _set_should_run(session, True)
    apply_info(session, info)
    return info


def stop_session(session: WahaSession) -> dict:
    info = _session_call(session, "stop_session")
    _set_should_run(session, False)
    apply_info(session, info)
    return info


def restart_session(session: WahaSession) -> dict:
    """Restart the session, with its config given again where WAHA forgot it."""
    client = client_for(session.container)
    current = client.get_session(session.remote_name) or {}
    if session.config and not current.get("config"):
        _give_back_config(client, session, current)  # an update restarts a running session
        info = client.start_session(session.remote_name)  # and starts a stopped one
    else:
        info = client.restart_session(session.remote_name)
    _set_should_run(session, True)
    apply_info(session, info)
    return info


def logout_session(session: WahaSession) -> dict:
    """Forget the WhatsApp account of the session (a new QR scan is needed)."""
    info = _session_call(session, "logout_session")
    with scope(tenant=session.tenant_id):
        WahaSession.objects.filter(pk=session.pk).update(me_id="", me_push_name="")
    session.me_id = session.me_push_name = ""
    apply_info(session, info)
    return info


def delete_session(session: WahaSession) -> None:
    """Delete the session in WAHA and free its seat in the container."""
    with contextlib.suppress(SessionNotFound):
        _session_call(session, "delete_session")
    with scope(tenant=session.tenant_id), transaction.atomic():
        # Lock the session row before the delete cascades to rows pointing at it (a chip's
        # link is set to NULL): the same order as a webhook's transaction, which updates the
        # session and then its chip — the other order deadlocks with it.
        locked = WahaSession.objects.select_for_update().filter(pk=session.pk).first()
        if locked is not None:
            locked.delete()


def _set_should_run(session: WahaSession, value: bool) -> None:
    if session.should_run != value:
        session.should_run = value
        with scope(tenant=session.tenant_id):
            WahaSession.objects.filter(pk=session.pk).update(should_run=value)


def qr(session: WahaSession, format: str = "image") -> bytes | str:  # noqa: A002 - WAHA's parameter name
    """The pairing QR: PNG bytes (format="image") or its raw text value (format="raw")."""
    return _session_call(session, "qr", format=format)


def request_code(session: WahaSession, phone_number: str) -> str:
    """A pairing code for a phone number (pairing without scanning the QR).

    Asked only while the session waits for a scan (Core hangs or fails on it while
    STARTING), with a bound of its own.
    """
    client = client_for(session.container, retries=0, timeout=REQUEST_CODE_TIMEOUT)
    status = (client.get_session(session.remote_name) or {}).get("status")
    if status != SessionStatus.SCAN_QR_CODE:
        raise SessionNotReady(f"The session is {status or 'unknown'}, not waiting for a scan.", 422, None)
    return client.request_code(session.remote_name, phone_number).get("code", "")


def send_text(session: WahaSession, chat_id: str, text: str) -> dict:
    """Send a text; returns WAHA's message (its id: waha.client.message_id(result))."""
    return client_for(session.container).send_text(session.remote_name, chat_id, text)


def chat_messages(session: WahaSession, chat_id: str, limit: int = 100) -> list[dict]:
    """What WAHA holds of one chat of the session, newest first (waha.client.WahaClient.chat_messages:
    each message's id, timestamp, fromMe, body, ack as WAHA gives them). Raises FeatureUnavailable when
    the engine cannot answer (a NOWEB session started without its store), SessionNotReady when not
    WORKING, SessionNotFound when not started, ContainerUnreachable."""
    return client_for(session.container).chat_messages(session.remote_name, chat_id, limit=limit)


def _media_allowed(session: WahaSession) -> None:
    if not session.container.sends_media:
        raise FeatureUnavailable("Sending images and files needs WAHA Plus; this chip's server is WAHA Core.", 422)


def send_image(session: WahaSession, chat_id: str, file: dict, caption: str | None = None) -> dict:
    _media_allowed(session)
    return client_for(session.container).send_image(session.remote_name, chat_id, file, caption)


def send_file(session: WahaSession, chat_id: str, file: dict, caption: str | None = None) -> dict:
    _media_allowed(session)
    return client_for(session.container).send_file(session.remote_name, chat_id, file, caption)


# --- after a container restart ------------------------------------------------------


def restart_container(container: WahaContainer, wait: bool = True) -> None:
    """Restart the container; its running sessions come back, with their configs."""
    restart_runtime(container)
    if wait:
        wait_ready(container)
        resume_sessions(container)


def resume_sessions(container: WahaContainer) -> list[str]:
    """Start the sessions that should run but do not (after a restart); returns their names."""
    return resume(container, wanted_sessions([container]).get(container.pk, []))


def wanted_sessions(containers: Iterable[WahaContainer]) -> dict[int, list[WahaSession]]:
    """The sessions of each container that should be running (a suspended tenant's do not, even
    in a container it shares with others)."""
    wanted: dict[int, list[WahaSession]] = {}
    with scopes_disabled():
        rows = WahaSession.objects.filter(container__in=list(containers), should_run=True, tenant__is_active=True)
        for session in rows.order_by("pk"):
            wanted.setdefault(session.container_id, []).append(session)
    return wanted


def resume(container: WahaContainer, wanted: list[WahaSession]) -> list[str]:
    """Start each wanted session WAHA has stopped, giving it its config first; recreate (with
    its config) one a Plus server lost. Returns the names of the sessions started."""
    if not wanted:
        return []
    client = client_for(container)
    present = {s["name"]: s for s in client.list_sessions(all=True)}
    started = []
    for session in wanted:
        config = json.loads(session.config) if session.config else None
        info = present.get(session.remote_name)
        if info is None:
            if config is None or container.is_core:
                log.warning("session %s is missing from %s (data lost?)", session.remote_name, container.name)
                continue
            log.warning("session %s was missing from %s: created again", session.remote_name, container.name)
            client.create_session(session.remote_name, config, start=True)
        elif info.get("status") in ("STOPPED", "FAILED"):
            _give_back_config(client, session, info)
            client.start_session(session.remote_name)
        else:
            continue
        started.append(session.remote_name)
    return started
