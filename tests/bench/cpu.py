"""CPU seconds used by the processes of a benchmark, by kind (read from /proc), to show where time goes."""
import os

KINDS = {
    "gunicorn": lambda cmd: "gunicorn" in cmd and "whago.wsgi" in cmd,
    "celery": lambda cmd: "celery -A whago worker" in cmd and "chips-" in cmd,
    "simulator": lambda cmd: "-m waha.simulator" in cmd,
    "postgres": lambda cmd: cmd.startswith("postgres:"),
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
            totals[kind] = totals.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return totals


def cpu_since(before: dict[str, float]) -> str:
    """'kind seconds, …' used since `before` (processes that ended meanwhile are not counted)."""
    after = cpu_seconds()
    return ", ".join(f"{kind} {after[kind] - before.get(kind, 0.0):.1f}" for kind in sorted(after))
