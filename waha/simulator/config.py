"""Simulator settings: command line first, then WAHA's environment variable names, then defaults."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

from .engines import ENGINES
from .profiles import PROFILES, Profile

TRUE_VALUES = {"1", "true", "yes", "on", "y", "t"}


def parse_bool(value: str | None, default: bool = False) -> bool:
    """Parse a WAHA-style boolean environment value."""
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in TRUE_VALUES


def _env(env: dict, *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value is not None and value.strip() != "":
            return value.strip()
    return None


def _float_or_none(value: str | None) -> float | None:
    if value is None or value.strip() == "" or value.strip().lower() in {"none", "null", "never"}:
        return None
    return float(value)


@dataclass
class GlobalHook:
    """The webhook every session gets from WHATSAPP_HOOK_* variables."""

    url: str
    events: list[str]
    hmac_key: str | None = None
    retries: dict = field(default_factory=dict)
    custom_headers: list[dict] = field(default_factory=list)

    def as_config(self) -> dict:
        """Return it in the WebhookConfig shape."""
        return {
            "url": self.url,
            "events": self.events,
            "hmac": {"key": self.hmac_key} if self.hmac_key else None,
            "retries": self.retries or None,
            "customHeaders": self.custom_headers or None,
        }


@dataclass
class Config:
    """Everything the simulator can be told at start."""

    port: int = 3000
    host: str = "127.0.0.1"
    api_key: str | None = None
    engine: str = "plus"
    profile_name: str = "plus"
    wa_engine: str = "NOWEB"
    data_dir: str | None = None
    control: bool = False
    starting_seconds: float = 0.3
    qr_rotate_seconds: float = 20.0
    status_wait_seconds: float = 1.0
    stop_seconds: float = 0.0
    start_retry_seconds: float = 2.0
    restart_sessions: bool = True
    excluded_paths: list[str] = field(default_factory=list)
    global_hook: GlobalHook | None = None
    ack_server_ms: float | None = 20.0
    ack_device_ms: float | None = 200.0
    ack_read_ms: float | None = None
    webhook_workers: int = 16
    webhook_timeout: float = 10.0
    max_messages: int = 200_000
    max_pending_webhooks: int = 100_000
    debug: bool = False
    # Received media (waha/simulator/media.py): WAHA_BASE_URL, else http://<WHATSAPP_API_HOSTNAME>:<port>.
    base_url: str | None = None
    url_host: str = "localhost"
    download_media: bool = True
    files_mimetypes: list[str] = field(default_factory=list)
    files_lifetime: float = 180.0

    @property
    def tier(self) -> str:
        """WAHA's tier name for the engine option."""
        return "CORE" if self.engine == "core" else "PLUS"

    @property
    def profile(self) -> Profile:
        """The imitated release's traits."""
        return PROFILES[self.profile_name]


def build_parser() -> argparse.ArgumentParser:
    """The command line parser."""
    p = argparse.ArgumentParser(
        prog="python -m waha.simulator",
        description=(
            "WAHA-compatible HTTP API with a fake WhatsApp network behind it. Every option can also come "
            "from the environment variable shown; the command line wins. See waha/simulator/README.md."
        ),
    )
    p.add_argument("--port", type=int, help="port to listen on [WHATSAPP_API_PORT, PORT; default 3000]")
    p.add_argument("--host", help="address to bind [WHATSAPP_API_HOSTNAME; default 127.0.0.1]")
    p.add_argument("--api-key", help="required X-Api-Key value [WAHA_API_KEY, WHATSAPP_API_KEY; default: no auth]")
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="WAHA release to imitate: plus, or core-2024.10 (real WAHA Core 2024.10.8 as observed) "
        "[WAHA_SIM_PROFILE; default plus]",
    )
    p.add_argument(
        "--engine",
        choices=["plus", "core"],
        help="WAHA tier to imitate; a profile sets it [WAHA_SIM_ENGINE or WAHA_VERSION; default plus]. "
        "The WhatsApp engine (NOWEB, WEBJS, GOWS) comes from WHATSAPP_DEFAULT_ENGINE (default NOWEB)",
    )
    p.add_argument("--data-dir", help="where sessions persist [WAHA_LOCAL_STORE_BASE_DIR; default: memory only]")
    p.add_argument(
        "--control",
        action="store_true",
        default=None,
        help="enable the fake-network routes under /_sim/ [WAHA_SIM_CONTROL=1]",
    )
    p.add_argument("--starting-seconds", type=float, help="time spent in STARTING [WAHA_SIM_STARTING_SECONDS; 0.3]")
    p.add_argument(
        "--qr-rotate-seconds", type=float, help="QR value rotation period [WAHA_SIM_QR_ROTATE_SECONDS; 20]"
    )
    p.add_argument(
        "--status-wait-seconds",
        type=float,
        help="how long a call waits for the status it needs before 422 "
        "[WAHA_SIM_STATUS_WAIT_SECONDS; 1, core-2024.10: 5]",
    )
    return p


def load_config(argv: list[str] | None = None, env: dict | None = None) -> Config:
    """Build the Config from argv and env (os.environ when None)."""
    env = dict(os.environ) if env is None else env
    args = build_parser().parse_args(argv)
    cfg = Config()

    port = args.port if args.port is not None else _env(env, "WHATSAPP_API_PORT", "PORT")
    cfg.port = int(port) if port is not None else cfg.port
    cfg.host = args.host or _env(env, "WHATSAPP_API_HOSTNAME") or cfg.host
    cfg.api_key = args.api_key or _env(env, "WAHA_API_KEY", "WHATSAPP_API_KEY")

    engine = args.engine or _env(env, "WAHA_SIM_ENGINE")
    explicit = engine is not None
    if engine is None:
        version = _env(env, "WAHA_VERSION")
        engine = "core" if version and version.upper() == "CORE" else "plus"
    engine = engine.lower()
    if engine not in {"plus", "core"}:
        raise SystemExit(f"unknown engine {engine!r}: use plus or core")
    profile = (args.profile or _env(env, "WAHA_SIM_PROFILE") or "plus").lower()
    if profile not in PROFILES:
        raise SystemExit(f"unknown profile {profile!r}: use {' or '.join(sorted(PROFILES))}")
    if profile != "plus":  # a release profile sets the tier
        tier = "core"
        if explicit and engine != tier:
            print(f"simulator: profile {profile} is WAHA {tier}; --engine {engine} ignored", file=sys.stderr)
        engine = tier
    cfg.engine, cfg.profile_name = engine, profile
    wa_engine = (_env(env, "WHATSAPP_DEFAULT_ENGINE") or "NOWEB").upper()
    if wa_engine not in ENGINES:
        raise SystemExit(f"unknown WHATSAPP_DEFAULT_ENGINE {wa_engine!r}: use {', '.join(ENGINES)}")
    if profile == "core-2024.10" and wa_engine == "GOWS":
        raise SystemExit("WAHA 2024.10.8 has no GOWS engine (Unknown whatsapp engine 'GOWS')")
    cfg.wa_engine = wa_engine

    cfg.data_dir = args.data_dir or _env(env, "WAHA_LOCAL_STORE_BASE_DIR")
    cfg.control = bool(args.control) if args.control is not None else parse_bool(_env(env, "WAHA_SIM_CONTROL"))

    def number(arg_value, name, default):
        if arg_value is not None:
            return float(arg_value)
        raw = _env(env, name)
        return float(raw) if raw is not None else default

    cfg.starting_seconds = number(args.starting_seconds, "WAHA_SIM_STARTING_SECONDS", cfg.starting_seconds)
    cfg.qr_rotate_seconds = number(args.qr_rotate_seconds, "WAHA_SIM_QR_ROTATE_SECONDS", cfg.qr_rotate_seconds)
    cfg.status_wait_seconds = number(
        args.status_wait_seconds, "WAHA_SIM_STATUS_WAIT_SECONDS", cfg.profile.status_wait_seconds
    )
    cfg.stop_seconds = number(None, "WAHA_SIM_STOP_SECONDS", cfg.profile.stop_seconds)
    cfg.start_retry_seconds = number(None, "WAHA_SIM_START_RETRY_SECONDS", cfg.start_retry_seconds)
    if cfg.qr_rotate_seconds <= 0:
        raise SystemExit("--qr-rotate-seconds must be positive")

    cfg.restart_sessions = parse_bool(_env(env, "WAHA_WORKER_RESTART_SESSIONS"), True) or parse_bool(
        _env(env, "WHATSAPP_RESTART_ALL_SESSIONS")
    )
    excluded = _env(env, "WHATSAPP_API_KEY_EXCLUDE_PATH")
    cfg.excluded_paths = [p.strip().strip("/") for p in excluded.split(",") if p.strip()] if excluded else []

    hook_url = _env(env, "WHATSAPP_HOOK_URL")
    hook_events = _env(env, "WHATSAPP_HOOK_EVENTS")
    if hook_url and hook_events:
        retries = {}
        if _env(env, "WHATSAPP_HOOK_RETRIES_POLICY"):
            retries["policy"] = _env(env, "WHATSAPP_HOOK_RETRIES_POLICY")
        if _env(env, "WHATSAPP_HOOK_RETRIES_DELAY_SECONDS"):
            retries["delaySeconds"] = float(_env(env, "WHATSAPP_HOOK_RETRIES_DELAY_SECONDS"))
        if _env(env, "WHATSAPP_HOOK_RETRIES_ATTEMPTS"):
            retries["attempts"] = int(_env(env, "WHATSAPP_HOOK_RETRIES_ATTEMPTS"))
        headers = []
        raw_headers = _env(env, "WHATSAPP_HOOK_CUSTOM_HEADERS")
        if raw_headers:
            for item in raw_headers.split(";"):
                if ":" in item:
                    name, value = item.split(":", 1)
                    headers.append({"name": name.strip(), "value": value.strip()})
        cfg.global_hook = GlobalHook(
            url=hook_url,
            events=[e.strip() for e in hook_events.split(",") if e.strip()],
            hmac_key=_env(env, "WHATSAPP_HOOK_HMAC_KEY"),
            retries=retries,
            custom_headers=headers,
        )

    if _env(env, "WAHA_SIM_ACK_SERVER_MS") is not None:
        cfg.ack_server_ms = _float_or_none(env["WAHA_SIM_ACK_SERVER_MS"])
    if _env(env, "WAHA_SIM_ACK_DEVICE_MS") is not None:
        cfg.ack_device_ms = _float_or_none(env["WAHA_SIM_ACK_DEVICE_MS"])
    if _env(env, "WAHA_SIM_ACK_READ_MS") is not None:
        cfg.ack_read_ms = _float_or_none(env["WAHA_SIM_ACK_READ_MS"])
    cfg.webhook_workers = int(_env(env, "WAHA_SIM_WEBHOOK_WORKERS") or cfg.webhook_workers)
    cfg.webhook_timeout = float(_env(env, "WAHA_SIM_WEBHOOK_TIMEOUT") or cfg.webhook_timeout)
    cfg.max_messages = int(_env(env, "WAHA_SIM_MAX_MESSAGES") or cfg.max_messages)
    cfg.max_pending_webhooks = int(_env(env, "WAHA_SIM_MAX_PENDING_WEBHOOKS") or cfg.max_pending_webhooks)
    cfg.debug = (_env(env, "WAHA_LOG_LEVEL") or "").lower() in {"debug", "trace"}
    cfg.base_url = _env(env, "WAHA_BASE_URL")
    cfg.url_host = _env(env, "WHATSAPP_API_HOSTNAME") or cfg.url_host
    cfg.download_media = parse_bool(_env(env, "WHATSAPP_DOWNLOAD_MEDIA"), True)
    types = _env(env, "WHATSAPP_FILES_MIMETYPES")
    cfg.files_mimetypes = [t for t in types.split(",") if t] if types else []
    cfg.files_lifetime = float(_env(env, "WHATSAPP_FILES_LIFETIME") or cfg.files_lifetime)
    return cfg
