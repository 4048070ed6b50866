"""Proxy operations: assigning egress to WAHA sessions, rotating, releasing, health sweeps, imports.

A function given one tenant's row works in that tenant's scope (rotate); the ones that find rows by
WAHA session name (session names are global) and the sweeps over every provider open
`scopes_disabled()`, each listed with its reason in whago/scopes_allowlist.py.
"""
import ipaddress
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from . import health
from .models import (
    Proxy,
    ProxyAlert,
    ProxyAssignment,
    ProxyCheck,
    ProxyProvider,
    format_server,
    mask_session_id,
    new_session_id,
)
from .signals import assignment_changed

logger = logging.getLogger(__name__)

SWEEP_LOCK = "proxies:health-sweep"


class ProxyUnavailable(Exception):
    """Providers are configured but none can take the session now (all unhealthy or full)."""


# --- Assignment -------------------------------------------------------------------------


def providers_configured() -> bool:
    """True when an active gateway or an active proxy of an active list exists; else chips run without proxy."""
    return ProxyProvider.objects.filter(is_active=True).filter(
        Q(kind=ProxyProvider.Kind.GATEWAY) | Q(proxies__is_active=True)
    ).exists()


def assignment_for(session_name: str) -> ProxyAssignment | None:
    """The active assignment of a WAHA session, if any."""
    with scopes_disabled():
        return (
            ProxyAssignment.objects.filter(session_name=session_name, released_at__isnull=True)
            .select_related("provider", "proxy")
            .first()
        )


def assign(tenant, session_name: str) -> ProxyAssignment | None:
    """Give a WAHA session its egress: the least-used healthy proxy, or a fresh sticky session.

    Idempotent per session. Returns None when no provider is configured (the session then
    runs without a proxy); raises ProxyUnavailable when providers exist but none is healthy.
    """
    with scopes_disabled():
        for _ in range(5):
            existing = assignment_for(session_name)
            if existing is not None:
                if existing.tenant_id != tenant.pk:
                    raise ValueError("This session name belongs to another tenant.")
                return existing
            if not providers_configured():
                return None
            try:
                with transaction.atomic():
                    choice = _choose()
                    if choice is None:
                        raise ProxyUnavailable("No healthy proxy is available for a new session.")
                    provider, proxy = choice
                    assignment = ProxyAssignment.objects.create(
                        tenant=tenant, session_name=session_name, provider=provider, proxy=proxy,
                        session_id=new_session_id(),
                    )
            except IntegrityError:
                continue  # the same session assigned concurrently, or a session id collision: look again
            logger.info("proxy assigned to session %s via %s (%s)", session_name, provider.name,
                        proxy or "gateway")
            return assignment
    raise ProxyUnavailable("Could not assign a proxy to this session.")


def _choose(exclude_proxy_id: int | None = None, exclude_provider_id: int | None = None):
    """(provider, proxy or None) to route a session through, locking what keeps counts right.

    Providers are tried by priority; a static list gives its least-used healthy proxy, a
    healthy gateway a new sticky session. Must run inside a transaction.
    """
    providers = ProxyProvider.objects.filter(is_active=True).exclude(pk=exclude_provider_id).order_by("priority", "pk")
    for provider in providers:
        if provider.is_gateway:
            if provider.healthy:
                return provider, None
            continue
        # Locking the provider row serialises choices on one list: two sessions assigned at
        # the same moment see each other's assignment and spread across the proxies.
        ProxyProvider.objects.select_for_update().filter(pk=provider.pk).first()
        proxy = (
            provider.proxies.filter(is_active=True, healthy=True)
            .exclude(pk=exclude_proxy_id)
            .annotate(load=Count("assignments", filter=Q(assignments__released_at__isnull=True)))
            .order_by("load", "latency_ms", "pk")
            .first()
        )
        if proxy is not None:
            return provider, proxy
    return None


def rotate(assignment: ProxyAssignment, reason: str = "rotated") -> ProxyAssignment:
    """A new egress for the session: a new sticky session on its gateway, or another proxy.

    Sends `assignment_changed` once committed; raises ProxyUnavailable if nothing else is healthy.
    """
    with scope(tenant=assignment.tenant_id), transaction.atomic():
        current = ProxyAssignment.objects.select_for_update().select_related("provider").get(pk=assignment.pk)
        if current.released_at is not None:
            raise ValueError("A released assignment cannot be rotated.")
        provider = current.provider
        if provider.is_gateway and provider.is_active and provider.healthy:
            choice = (provider, None)
        else:
            choice = _choose(exclude_proxy_id=current.proxy_id)
        if choice is None:
            raise ProxyUnavailable("No other healthy proxy is available.")
        moved = _apply(current, *choice, reason=reason)
    return moved


def _apply(assignment: ProxyAssignment, provider: ProxyProvider, proxy: Proxy | None, reason: str) -> ProxyAssignment:
    """Point the assignment at a new egress with a new session id; announce it on commit."""
    old = str(assignment.proxy or assignment.provider)
    assignment.provider, assignment.proxy = provider, proxy
    assignment.session_id = new_session_id()
    assignment.rotated_at = timezone.now()
    assignment.rotations += 1
    assignment.save(update_fields=["provider", "proxy", "session_id", "rotated_at", "rotations"])
    logger.info("session %s egress changed (%s): %s -> %s", assignment.session_name, reason, old,
                proxy or provider.name)
    transaction.on_commit(lambda: _announce(assignment, reason))
    return assignment


def _announce(assignment: ProxyAssignment, reason: str) -> None:
    for receiver, result in assignment_changed.send_robust(sender=ProxyAssignment, assignment=assignment,
                                                            reason=reason):
        if isinstance(result, Exception):
            logger.error("assignment_changed receiver %s failed for session %s: %s",
                         getattr(receiver, "__qualname__", receiver), assignment.session_name,
                         redact(f"{type(result).__name__}: {result}", assignment))


def release(session_name: str) -> bool:
    """End the session's assignment (its chip was deleted); False if it had none."""
    with scopes_disabled():
        released = ProxyAssignment.objects.filter(session_name=session_name, released_at__isnull=True).update(
            released_at=timezone.now()
        )
    if released:
        logger.info("proxy assignment of session %s released", session_name)
    return bool(released)


# --- What WAHA and the portal see -------------------------------------------------------


def endpoint(assignment: ProxyAssignment) -> health.Endpoint:
    """Where the assignment's traffic goes and the credentials that pin its session."""
    provider = assignment.provider
    if assignment.proxy_id:
        proxy = assignment.proxy
        return health.Endpoint(provider.scheme, proxy.host, proxy.port, proxy.username, proxy.password)
    username = provider.sticky_username(assignment.session_id) if provider.username else ""
    return health.Endpoint(provider.scheme, provider.host, provider.port, username, provider.password)


def waha_proxy_config(assignment: ProxyAssignment | None) -> dict | None:
    """The `config.proxy` of a WAHA session: {"server", "username", "password"}, or None."""
    if assignment is None or assignment.released_at is not None:
        return None
    target = endpoint(assignment)
    config = {"server": format_server(target.scheme, target.host, target.port)}
    if target.username or target.password:
        config.update(username=target.username, password=target.password)
    return config


def egress_summary(assignment: ProxyAssignment | None) -> dict | None:
    """What a tenant may see of a session's egress: provider, country, masked session id."""
    if assignment is None or assignment.released_at is not None:
        return None
    provider = assignment.provider
    return {
        "provider": provider.name,
        "kind": provider.get_kind_display(),
        "country": provider.country,
        "session": mask_session_id(assignment.session_id),
        "healthy": (assignment.proxy.healthy if assignment.proxy_id else provider.healthy),
        "since": assignment.rotated_at or assignment.created_at,
    }


_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def redact(text: str, assignment: ProxyAssignment | None = None) -> str:
    """Text (e.g. a WAHA error) with proxy credentials and URL userinfo masked, fit for tenants."""
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    if assignment is not None:
        target = endpoint(assignment)
        text = health.redact(text, target.password, target.username)
    return text


# --- Health -----------------------------------------------------------------------------


@dataclass
class SweepReport:
    checked: int = 0
    failed: int = 0
    unhealthy: list[str] = field(default_factory=list)
    moved: int = 0
    stranded: int = 0
    skipped: bool = False


def _target_endpoint(provider: ProxyProvider, proxy: Proxy | None) -> health.Endpoint:
    if proxy is not None:
        return health.Endpoint(provider.scheme, proxy.host, proxy.port, proxy.username, proxy.password)
    # A gateway is checked with its plain username (no sticky session).
    return health.Endpoint(provider.scheme, provider.host, provider.port, provider.username, provider.password)


def check_now(provider: ProxyProvider, proxy: Proxy | None = None) -> ProxyCheck:
    """Check one proxy (or one gateway) through the network and record the result."""
    result = health.check(_target_endpoint(provider, proxy), settings.PROXY_CHECK_URL, settings.PROXY_CHECK_TIMEOUT)
    return record_check(provider, proxy, result)


def record_check(provider: ProxyProvider, proxy: Proxy | None, result: health.CheckResult) -> ProxyCheck:
    """Store a check, update the health state and alert operators when it goes down or up."""
    with transaction.atomic():
        target = (Proxy if proxy is not None else ProxyProvider).objects.select_for_update().get(
            pk=(proxy or provider).pk
        )
        flip = target.record(result.outcome, result.latency_ms, settings.PROXY_FAILURE_THRESHOLD)
        target.save(update_fields=["healthy", "last_check", "last_ok", "last_outcome", "latency_ms",
                                   "consecutive_failures"])
        check = ProxyCheck.objects.create(provider=provider, proxy=proxy, outcome=result.outcome,
                                          latency_ms=result.latency_ms, detail=result.detail)
    name = _label(provider, proxy)
    if result.ok:
        logger.debug("proxy check %s ok in %s ms", name, result.latency_ms)
    else:
        logger.warning("proxy check %s failed (%s): %s", name, result.outcome, result.detail)
    if flip == "down":
        open_alert(
            ProxyAlert.Kind.UNHEALTHY, provider, proxy,
            f"{name} failed {target.consecutive_failures} checks in a row and is no longer used "
            f"({result.outcome}): {result.detail}",
        )
    elif flip == "up":
        resolved = _open_alerts(provider, proxy).update(resolved_at=timezone.now())
        logger.info("proxy %s is healthy again (%s alerts resolved)", name, resolved)
    return check


def _label(provider: ProxyProvider, proxy: Proxy | None) -> str:
    return f"proxy {proxy} of {provider.name}" if proxy is not None else f"gateway {provider.name}"


def _open_alerts(provider: ProxyProvider, proxy: Proxy | None):
    alerts = ProxyAlert.objects.filter(provider=provider, resolved_at__isnull=True)
    return alerts.filter(proxy=proxy) if proxy is not None else alerts.filter(proxy__isnull=True)


def open_alert(kind: str, provider: ProxyProvider, proxy: Proxy | None, message: str) -> ProxyAlert:
    """Record an operator alert (shown in the admin) and e-mail OPERATOR_EMAILS."""
    alert = ProxyAlert.objects.create(kind=kind, provider=provider, proxy=proxy, message=message)
    logger.warning("proxy alert: %s", message)
    if settings.OPERATOR_EMAILS:
        try:
            send_mail(f"[WHAGO] {alert.get_kind_display()}: {proxy or provider}", message,
                      None, settings.OPERATOR_EMAILS)
        except Exception as exc:  # the alert is stored; a mail failure must not stop the sweep
            logger.error("proxy alert e-mail not sent: %s", type(exc).__name__)
    return alert


def _targets() -> list[tuple[ProxyProvider, Proxy | None]]:
    gateways = ProxyProvider.objects.filter(is_active=True, kind=ProxyProvider.Kind.GATEWAY)
    proxies = Proxy.objects.filter(is_active=True, provider__is_active=True,
                                   provider__kind=ProxyProvider.Kind.STATIC).select_related("provider")
    return [(g, None) for g in gateways] + [(p.provider, p) for p in proxies]


def run_health_checks() -> SweepReport:
    """Check every active proxy and gateway, then move sessions off the unhealthy ones."""
    from django.core.cache import cache

    report = SweepReport()
    # Beat may fire again while a slow sweep runs; the lock expires on its own if a worker dies.
    if not cache.add(SWEEP_LOCK, "1", timeout=int(settings.PROXY_CHECK_TIMEOUT * 20 + 60)):
        logger.info("proxy health sweep already running; skipped")
        report.skipped = True
        return report
    try:
        with scopes_disabled():
            targets = _targets()
            endpoints = [_target_endpoint(provider, proxy) for provider, proxy in targets]
            with ThreadPoolExecutor(max_workers=max(1, settings.PROXY_CHECK_CONCURRENCY)) as pool:
                results = list(pool.map(
                    lambda ep: health.check(ep, settings.PROXY_CHECK_URL, settings.PROXY_CHECK_TIMEOUT), endpoints
                ))
            for (provider, proxy), result in zip(targets, results, strict=True):
                record_check(provider, proxy, result)
                report.checked += 1
                if not result.ok:
                    report.failed += 1
            report.moved, report.stranded = evacuate()
            report.unhealthy = [
                _label(p, x) for p, x in _targets() if not (x or p).healthy
            ]
            cutoff = timezone.now() - timedelta(days=settings.PROXY_CHECK_RETENTION_DAYS)
            ProxyCheck.objects.filter(checked_at__lt=cutoff).delete()
    finally:
        cache.delete(SWEEP_LOCK)
    logger.info("proxy health sweep: %s checked, %s failed, %s sessions moved, %s without a healthy proxy",
                report.checked, report.failed, report.moved, report.stranded)
    return report


def evacuate() -> tuple[int, int]:
    """Move every active assignment off unhealthy or disabled proxies and gateways.

    Returns (moved, stranded): stranded sessions stay put and operators get an alert.
    """
    moved_total = stranded_total = 0
    with scopes_disabled():
        bad = ProxyAssignment.objects.filter(released_at__isnull=True).filter(
            Q(proxy__isnull=False, proxy__healthy=False)
            | Q(proxy__isnull=False, proxy__is_active=False)
            | Q(proxy__isnull=True, provider__healthy=False)
            | Q(provider__is_active=False)
        )
        groups: dict[tuple[int, int | None], list[int]] = {}
        for pk, provider_id, proxy_id in bad.values_list("pk", "provider_id", "proxy_id").order_by("pk"):
            groups.setdefault((provider_id, proxy_id), []).append(pk)
        for (provider_id, proxy_id), pks in groups.items():
            provider = ProxyProvider.objects.get(pk=provider_id)
            proxy = Proxy.objects.get(pk=proxy_id) if proxy_id else None
            source = proxy or provider
            reason = "proxy_disabled" if not (source.is_active and provider.is_active) else "proxy_unhealthy"
            destinations, stranded = [], 0
            for pk in pks:
                with transaction.atomic():
                    current = ProxyAssignment.objects.select_for_update().filter(
                        pk=pk, released_at__isnull=True, provider_id=provider_id, proxy_id=proxy_id
                    ).first()
                    if current is None:
                        continue  # released or moved meanwhile
                    choice = _choose(
                        exclude_proxy_id=proxy_id,
                        exclude_provider_id=provider_id if proxy_id is None else None,
                    )
                    if choice is None:
                        stranded += 1
                        continue
                    _apply(current, *choice, reason=reason)
                    destinations.append(str(choice[1] or choice[0].name))
            name = _label(provider, proxy)
            if destinations:
                open_alert(
                    ProxyAlert.Kind.MOVED, provider, proxy,
                    f"{len(destinations)} session(s) moved from {name} to {', '.join(sorted(set(destinations)))}.",
                )
            if stranded:
                if not _open_alerts(provider, proxy).filter(kind=ProxyAlert.Kind.NO_HEALTHY).exists():
                    open_alert(
                        ProxyAlert.Kind.NO_HEALTHY, provider, proxy,
                        f"{stranded} session(s) still use {name}, which is not usable, and no healthy "
                        "proxy is available to move them to.",
                    )
            else:
                _open_alerts(provider, proxy).filter(kind=ProxyAlert.Kind.NO_HEALTHY).update(
                    resolved_at=timezone.now()
                )
            moved_total += len(destinations)
            stranded_total += stranded
    return moved_total, stranded_total


# --- Bulk import of a static list -------------------------------------------------------

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$",
                       re.IGNORECASE)


@dataclass
class LineError:
    line: int
    reason: str
    shown: str


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[LineError] = field(default_factory=list)


def parse_proxy_line(line: str) -> tuple[str, int, str, str]:
    """(host, port, username, password) from `host:port` or `host:port:user:pass`; ValueError says why not."""
    line = line.strip()
    if line.startswith("["):
        end = line.find("]")
        if end < 0:
            raise ValueError("an IPv6 address opened with [ must be closed with ]")
        host, rest = line[1:end], line[end + 1:]
        if not rest.startswith(":"):
            raise ValueError("expected host:port or host:port:user:pass")
        parts = [host, *rest[1:].split(":", 2)]
    else:
        parts = line.split(":", 3)
    if len(parts) not in (2, 4):
        raise ValueError("expected host:port or host:port:user:pass")
    host, port_text = parts[0].strip(), parts[1].strip()
    username, password = (parts[2], parts[3]) if len(parts) == 4 else ("", "")
    if not host:
        raise ValueError("the host is empty")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise ValueError("the host is not a valid name or IP address")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("the port must be a number from 1 to 65535")
    if len(parts) == 4 and (not username or not password):
        raise ValueError("the username and the password must both be filled in")
    if len(username) > 255 or len(password) > 255:
        raise ValueError("the username or the password is longer than 255 characters")
    return host, int(port_text), username, password


def _shown(line: str) -> str:
    """A bad line as reported back: its host:port part only, never what may be a password."""
    stripped = line.strip()
    head = stripped[: stripped.find("]") + 1] if stripped.startswith("[") else stripped.split(":", 1)[0]
    rest = stripped[len(head):].split(":")
    port = rest[1] if len(rest) > 1 else ""
    extra = ":***" * max(0, len(rest) - 2)
    return f"{head}:{port}{extra}"[:80] if port else head[:80]


def import_static_list(provider: ProxyProvider, text: str) -> ImportReport:
    """Create or update the proxies of a static list from pasted lines; bad lines are reported, good ones kept."""
    if provider.is_gateway:
        raise ValueError("Only static-list providers hold a list of proxies.")
    report = ImportReport()
    seen: dict[tuple[str, int], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.strip().startswith("#"):
            continue
        try:
            host, port, username, password = parse_proxy_line(raw)
        except ValueError as exc:
            report.errors.append(LineError(number, str(exc), _shown(raw)))
            continue
        key = (host.lower(), port)
        if key in seen:
            report.errors.append(LineError(number, f"the same host and port as line {seen[key]}", _shown(raw)))
            continue
        seen[key] = number
        with transaction.atomic():
            proxy = Proxy.objects.select_for_update().filter(provider=provider, host__iexact=host, port=port).first()
            if proxy is None:
                Proxy.objects.create(provider=provider, host=host, port=port, username=username, password=password)
                report.created += 1
            elif (proxy.username, proxy.password) != (username, password):
                proxy.username, proxy.password = username, password
                proxy.save(update_fields=["username", "password"])
                report.updated += 1
            else:
                report.unchanged += 1
    logger.info("static list %s imported: %s created, %s updated, %s unchanged, %s bad lines",
                provider.name, report.created, report.updated, report.unchanged, len(report.errors))
    return report
