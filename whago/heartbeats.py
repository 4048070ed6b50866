"""Heartbeats of the Celery worker and beat processes, and the alert when a role falls silent.

Each `celery worker` and `celery beat` process writes its ProcessHeartbeat row every
HEARTBEAT_SECONDS from a thread of its own (started by whago.celery), in the database, which a
Redis outage does not take down. After each beat it looks at the other role: when no worker
(or no beat) was seen for HEARTBEAT_STALE_SECONDS, operators are e-mailed once for that
silence. /status/ and the operations dashboard show the same (/status/ then answers 503, for
an uptime probe); /status/ is the place to look when both processes are gone.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import connections
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import ProcessHeartbeat

log = logging.getLogger(__name__)
Role = ProcessHeartbeat.Role
# Rows of processes gone for longer than this are deleted by the heartbeats of the others.
FORGET_AFTER = timedelta(days=7)


def started(role: str, name: str) -> None:
    """A process of this role starts (or starts again under the same name)."""
    now = timezone.now()
    ProcessHeartbeat.objects.update_or_create(
        role=role, name=name[:200], defaults={"started_at": now, "seen_at": now, "silence_reported_at": None})


def beat(role: str, name: str) -> None:
    """The process is alive now."""
    now = timezone.now()
    updated = ProcessHeartbeat.objects.filter(role=role, name=name[:200]).update(seen_at=now,
                                                                               silence_reported_at=None)
    if not updated:
        started(role, name)


@dataclass
class RoleState:
    role: str
    label: str
    last_seen: datetime | None
    silent_for: float | None  # seconds since the last heartbeat of any process of the role
    stale: bool
    processes: list[ProcessHeartbeat] = field(default_factory=list)


def states(now: datetime | None = None) -> list[RoleState]:
    """Worker and beat: who was seen last and whether the role is silent (one query)."""
    now = now or timezone.now()
    rows = list(ProcessHeartbeat.objects.filter(seen_at__gte=now - FORGET_AFTER).order_by("-seen_at"))
    result = []
    for role, label in Role.choices:
        mine = [row for row in rows if row.role == role]
        last = mine[0].seen_at if mine else None
        silent_for = (now - last).total_seconds() if last else None
        stale = silent_for is None or silent_for > settings.HEARTBEAT_STALE_SECONDS
        result.append(RoleState(role, str(label), last, silent_for, stale, mine))
    return result


def operator_emails() -> list[str]:
    """OPERATOR_EMAILS, else every active staff user."""
    if settings.OPERATOR_EMAILS:
        return list(settings.OPERATOR_EMAILS)
    users = get_user_model().objects.filter(is_active=True, is_staff=True).exclude(email="")
    return list(users.values_list("email", flat=True))


def report_silences(watcher: str | None = None) -> list[str]:
    """E-mail operators about each silent role (but the watcher's own), once per silence.

    The last row of the role is marked in one conditional UPDATE, so when several processes
    watch, one of them sends the mail. A role never seen at all is shown by /status/ only.
    Returns the roles reported now.
    """
    now = timezone.now()
    reported = []
    for state in states(now):
        if state.role == watcher or not state.stale or not state.processes:
            continue
        last = state.processes[0]
        if not ProcessHeartbeat.objects.filter(pk=last.pk, silence_reported_at=None).update(silence_reported_at=now):
            continue
        recipients = operator_emails()
        values = {"role": state.label, "seconds": int(state.silent_for), "name": last.name,
                  "seen": timezone.localtime(last.seen_at).strftime("%d/%m/%Y %H:%M:%S")}
        subject = _("[WHAGO] No %(role)s seen for %(seconds)s s") % values
        body = _(
            "No %(role)s process has given a sign of life for %(seconds)s seconds; the last one was %(name)s, "
            "at %(seen)s. While it is down, nothing is sent (worker) or nothing is scheduled (beat). Check the "
            "process (docker compose ps; docker compose logs) and the broker; /status/ shows the state."
        ) % values
        log.error("%s", subject)
        if recipients:
            send_mail(subject, body, None, recipients, fail_silently=True)
        reported.append(state.role)
    return reported


def forget_gone(now: datetime | None = None) -> int:
    now = now or timezone.now()
    return ProcessHeartbeat.objects.filter(seen_at__lt=now - FORGET_AFTER).delete()[0]


class Heart(threading.Thread):
    """The heartbeat thread of one worker or beat process."""

    def __init__(self, role: str, name: str, interval: float | None = None):
        super().__init__(name=f"whago-heartbeat-{role}", daemon=True)
        self.role, self.process_name = role, name
        self.interval = interval or settings.HEARTBEAT_SECONDS
        self.stopped = threading.Event()

    def run(self) -> None:
        first = True
        while True:
            try:
                if first:
                    started(self.role, self.process_name)
                    forget_gone()
                    first = False
                else:
                    beat(self.role, self.process_name)
                report_silences(watcher=self.role)
            except Exception:  # the database is down: try again at the next beat
                log.warning("heartbeat of %s %s not recorded", self.role, self.process_name, exc_info=True)
            finally:
                connections.close_all()  # this thread's connections: none kept between beats
            if self.stopped.wait(self.interval):
                return


def start(role: str, name: str) -> Heart:
    heart = Heart(role, name)
    heart.start()
    return heart
