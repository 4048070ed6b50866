"""CPU seconds used by the processes of a benchmark, by kind (read from /proc), to show where time goes.

The kernel's count of a process includes its children that ended, so a database backend that
closed during the run still counts, through the postmaster."""
import os

KINDS = {
    "gunicorn": lambda cmd: "gunicorn" in cmd and "whago.wsgi" in cmd,
    "celery": lambda cmd: "celery -A whago worker" in cmd and "chips-" in cmd,
    "simulator": lambda cmd: "-m waha.simulator" in cmd,
    "postgres": lambda cmd: cmd.startswith("postgres:") or "/bin/postgres " in cmd,
    "redis": lambda cmd: cmd.startswith("/usr/bin/redis-server") or cmd.startswith("redis-server"),
}


def cpu_seconds() -> dict[str, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == os.getpid():
            kind = "bench"
        else:
            kind = next((name for name, match in KINDS.items() if match(cmd)), None)
        if kind:
            # Own time, plus that of children which ended (PostgreSQL backends, pool processes).
            own_and_ended = sum(int(fields[index]) for index in (11, 12, 13, 14))
            totals[kind] = totals.get(kind, 0.0) + own_and_ended / ticks
    return totals


def used_since(before: dict[str, float]) -> dict[str, float]:
    """CPU seconds used by each kind since `before`."""
    after = cpu_seconds()
    return {kind: after[kind] - before.get(kind, 0.0) for kind in after}


def cpu_since(before: dict[str, float]) -> str:
    """'kind seconds, …' used since `before` (processes that ended meanwhile are not counted)."""
    after = cpu_seconds()
    return ", ".join(f"{kind} {after[kind] - before.get(kind, 0.0):.1f}" for kind in sorted(after))
