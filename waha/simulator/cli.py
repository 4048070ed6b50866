"""Command line: parse options, start the server, stop cleanly on SIGTERM/SIGINT."""
from __future__ import annotations

import signal
import sys
import threading

from .config import load_config
from .core import Simulator
from .core2024 import Core2024Simulator
from .server import SimServer


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGTERM or SIGINT."""
    cfg = load_config(argv)
    sim = Core2024Simulator(cfg) if cfg.profile_name == "core-2024.10" else Simulator(cfg)
    try:
        server = SimServer(sim)
    except OSError as exc:
        sim.close()
        print(f"simulator: cannot listen on {cfg.host}:{cfg.port}: {exc}", file=sys.stderr, flush=True)
        return 2

    def shutdown(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    if not cfg.api_key or not cfg.profile.key_enforced:
        print("simulator: the API key is not enforced, every request is accepted", file=sys.stderr, flush=True)
    print(
        f"WAHA simulator listening on http://{shown}:{port} (profile {cfg.profile_name}, tier {cfg.engine}, "
        f"engine {cfg.wa_engine}, control "
        f"{'on' if cfg.control else 'off'}, data {cfg.data_dir or 'memory'})",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        sim.close()
    return 0
