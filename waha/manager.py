"""What other apps (chips, the console, tasks) call to run WAHA: one import for the operations
that live in waha's modules by job:

- containers: naming, environment, lifecycle on a runtime, capabilities read from the server
- placement: where a session goes (the tenant's container, or a registered external server)
- sessions: session config, create/start/stop/delete, pairing, sending, resume after restarts
- health, stats, alerts, orphans: the sweeps beat runs
"""
from .alerts import alert_recipients, alert_sweep
from .containers import (
    ContainerNotReady,
    WahaManagerError,
    client_for,
    container_logs,
    container_stats,
    delete_container,
    detect_capabilities,
    ensure_started,
    env_for,
    instance_slug,
    labels_for,
    limits_of,
    list_sessions,
    resize_containers,
    runtime_of,
    spec_for,
    start_container,
    stop_container,
    wait_ready,
)
from .health import health_sweep
from .orphans import cleanup_orphans, find_orphans
from .placement import (
    NoNodeWithRoom,
    NoServerWithRoom,
    PortRangeExhausted,
    TenantSuspended,
    ensure_container,
    move_container,
    port_range,
    relocate_stranded,
    waha_nodes,
)
from .sessions import (
    DEFAULT_EVENTS,
    ProxyNotSupported,
    chat_messages,
    create_session,
    delete_session,
    get_session,
    logout_session,
    qr,
    request_code,
    restart_container,
    restart_session,
    resume_sessions,
    send_file,
    send_image,
    send_text,
    session_config,
    start_session,
    stop_session,
)
from .stats import stats_sweep

__all__ = [
    "ContainerNotReady", "DEFAULT_EVENTS", "NoNodeWithRoom", "NoServerWithRoom", "PortRangeExhausted",
    "ProxyNotSupported", "TenantSuspended", "WahaManagerError", "alert_recipients", "alert_sweep", "chat_messages",
    "cleanup_orphans", "client_for", "container_logs", "container_stats", "create_session", "delete_container",
    "delete_session", "detect_capabilities", "ensure_container", "ensure_started", "env_for", "find_orphans",
    "get_session", "health_sweep", "instance_slug", "labels_for", "limits_of", "list_sessions", "logout_session",
    "move_container", "port_range", "qr", "relocate_stranded", "request_code", "resize_containers",
    "restart_container", "restart_session", "resume_sessions", "runtime_of", "send_file", "send_image", "send_text",
    "session_config", "spec_for", "start_container", "start_session", "stats_sweep", "stop_container",
    "stop_session", "waha_nodes", "wait_ready",
]
