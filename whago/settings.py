"""WHAGO settings: every value comes from the environment, with embedded defaults.

Unset variables give the embedded mode of `make run`: SQLite under var/, a Celery
broker on the filesystem, the local WAHA runtime and the sandbox payment gateway.
Each variable is documented in .env.example.
"""
import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
# An empty variable counts as unset, so .env.example can be copied as it is.
for _name in [name for name, value in os.environ.items() if value == ""]:
    del os.environ[_name]

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
PRODUCTION = DJANGO_ENV == "production"
# The image build (Dockerfile: collectstatic, compilemessages): production's static storage,
# throwaway secrets (none written under var/, so none is baked into the image).
BUILD = DJANGO_ENV == "build"
VAR_DIR = Path(env.str("WHAGO_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _embedded_secret(name: str) -> str:
    """A random secret kept under var/, so embedded mode survives restarts."""
    if BUILD:  # never baked into an image
        return secrets.token_urlsafe(50)
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


if PRODUCTION:
    SECRET_KEY = env.str("SECRET_KEY")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
    DEBUG = False
else:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _embedded_secret("secret_key")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
    # Off unless asked for: Django's debug pages list every URL and show tracebacks (plain 404/500 pages instead).
    DEBUG = env.bool("DEBUG", default=False)

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Public base URL of this deployment: links in e-mails, WAHA webhook targets.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "whago",
    "whago.apps.WhagoAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.forms",  # widget templates for the project-wide form renderer
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_htmx",
    "axes",
    "django_ratelimit",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "waha",
    "proxies",
    "billing",
    "chips",
    "whago.console",  # the one place that imports every app (dashboard, tenant list, front page): last
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
    "whago.middleware.TenantMiddleware",
]

ROOT_URLCONF = "whago.urls"
# Every form of the portal renders through templates/forms/ (errors next to their field).
FORM_RENDERER = "whago.renderers.PortalFormRenderer"
WSGI_APPLICATION = "whago.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "whago.context_processors.portal",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'whago.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat share one file: wait for locks, do not fail.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Several test runs may share one PostgreSQL server: each names its own test database.
DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default="") or None}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Shared between the web process and the worker without any server.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
# Per process, for hot lookups of rows that rarely change (kept seconds, see waha.webhooks).
CACHES["local"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "whago-local"}
# The sign-up limits count in Redis (atomic increments, shared by every web process); the
# embedded mode's one web process counts in its own memory.
RATELIMIT_USE_CACHE = "default" if REDIS_URL else "local"
# django-ratelimit's checks know django-redis, not Django's own RedisCache (whose increments are
# atomic too), and refuse local memory, which the embedded mode's one process counts in correctly.
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"] + ([] if REDIS_URL else ["django_ratelimit.E003"])

AUTH_USER_MODEL = "whago.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "landing"

# Login lockout (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one
# account from one address, that pair is locked for AXES_COOLOFF_MINUTES.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_FORM_FIELD = "username"
# Sign-ups that cannot be farmed: per client address and for the whole site (django-ratelimit
# syntax, e.g. 5/h); and a new company connects a WhatsApp number (gets a container) only once
# its owner confirmed the e-mail address (a link valid for EMAIL_CONFIRMATION_DAYS).
SIGNUP_RATE_PER_ADDRESS = env.str("SIGNUP_RATE_PER_ADDRESS", default="5/h")
SIGNUP_RATE_GLOBAL = env.str("SIGNUP_RATE_GLOBAL", default="200/h")
REQUIRE_EMAIL_CONFIRMATION = env.bool("REQUIRE_EMAIL_CONFIRMATION", default=True)
EMAIL_CONFIRMATION_DAYS = env.int("EMAIL_CONFIRMATION_DAYS", default=3)
# Reverse proxies (TLS terminators, load balancers) in front of the web server that append the
# client's address to X-Forwarded-For. 0: REMOTE_ADDR is the client. Set it behind a proxy, or
# every client shares the proxy's address: one attacker would lock out any account (axes) and
# use up everybody's sign-ups. The login lockout and the sign-up limits read the same address.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
RATELIMIT_IP_META_KEY = "whago.ratelimits.client_ip"
AXES_CLIENT_IP_CALLABLE = "whago.ratelimits.client_ip"
AXES_USERNAME_CALLABLE = "whago.services.login_identifier"
AXES_LOCKOUT_TEMPLATE = "registration/locked.html"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

LANGUAGE_CODE = "pt-br"
LANGUAGES = [("pt-br", _("Portuguese (Brazil)")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "America/Sao_Paulo"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION or BUILD
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Outside production the static files are served from the apps' folders, no collectstatic needed.
WHITENOISE_USE_FINDERS = WHITENOISE_AUTOREFRESH = not PRODUCTION
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# E-mail: the console in embedded mode; EMAIL_URL (smtp://user:pass@host:587) otherwise.
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="WHAGO <no-reply@whago.local>")
# Where customers write for help (suspension page, API refusals); the product's name in e-mails.
SUPPORT_EMAIL = env.str("SUPPORT_EMAIL", default="suporte@whago.local")
SITE_NAME = env.str("SITE_NAME", default="WHAGO")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Operators who receive platform alerts by e-mail (empty: staff users allowed to see alerts).
OPERATOR_EMAILS = env.list("OPERATOR_EMAILS", default=[])

# Secrets stored in the database (WAHA API keys, proxy passwords, gateway keys) are
# encrypted with these Fernet keys; the first one encrypts, all of them decrypt.
if PRODUCTION:
    FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS")
else:
    FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[]) or [_embedded_secret("field_key")]

# Celery: kombu's filesystem transport when no broker is set, so `make run` needs no
# server; a real worker process runs the tasks in every mode (never eager).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # kombu's default is ./control
        "store_processed": False,
        "polling_interval": 0.2,
    }
    # The filesystem transport has no fanout exchange for remote control.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A web request that cannot publish fails fast (Celery's publish retry policy: three tries in
# under a second; the API answers 503 with Retry-After). Tasks running in the worker keep trying
# for WORKER_PUBLISH_RETRY_SECONDS (whago.celery): a lane's next slice or a retry published
# while Redis restarts waits for it instead of failing. (Not CELERY_TASK_PUBLISH_RETRY_POLICY
# here: the worker could not override it.)
WORKER_PUBLISH_RETRY_SECONDS = env.int("WORKER_PUBLISH_RETRY_SECONDS", default=120)
# The threads pool cannot stop a running task; tasks are idempotent and their messages come back.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Heartbeats of the worker and beat processes (whago.heartbeats): written every
# HEARTBEAT_SECONDS; /status/ and an e-mail to operators say when one is silent for HEARTBEAT_STALE_SECONDS.
HEARTBEAT_SECONDS = env.int("HEARTBEAT_SECONDS", default=15)
HEARTBEAT_STALE_SECONDS = env.int("HEARTBEAT_STALE_SECONDS", default=60)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Every periodic task, declared here (seconds between runs). At start, beat's DatabaseScheduler
# writes each entry into django-celery-beat's tables by name (update_or_create): task and interval
# follow this dict on every restart; an entry an operator disabled in the admin stays disabled.
# An entry removed from this dict is NOT removed from the database: delete its row with a migration.
# Tested by tests/whago/test_beat_schedule.py.
CELERY_BEAT_SCHEDULE = {
    "waha: health sweep": {"task": "waha.tasks.health_sweep", "schedule": 30},
    "waha: stats sweep": {"task": "waha.tasks.stats_sweep", "schedule": 60},
    "waha: alert rules": {"task": "waha.tasks.alert_sweep", "schedule": 60},
    "waha: orphan cleanup": {"task": "waha.tasks.cleanup_orphans", "schedule": 3600},
    "waha: prune webhook events": {"task": "waha.tasks.prune_webhook_events", "schedule": 3600},
    # (The entry keeps its earlier name: beat updates the stored row of that name in place.)
    "chips: requeue stale messages": {"task": "chips.tasks.sweep_sends", "schedule": env.float(
        "CHIPS_SEND_SWEEP_SECONDS", default=5.0)},
    "chips: campaign kick": {"task": "chips.tasks.kick_campaigns", "schedule": 10},
    "chips: provisioning sweep": {"task": "chips.tasks.provision_sweep", "schedule": 60},
    "chips: prune webhook deliveries": {"task": "chips.tasks.prune_webhook_deliveries", "schedule": 3600},
    "chips: redeliver lost webhooks": {"task": "chips.tasks.redeliver_webhooks", "schedule": 60},
    "chips: requeue lost media fetches": {"task": "chips.tasks.requeue_lost_media", "schedule": 60},
    "proxies: health sweep": {"task": "proxies.tasks.check_proxies", "schedule": 60},
    "billing: expire subscriptions": {"task": "billing.tasks.expire_subscriptions", "schedule": 3600},
    "whago: prune audit log": {"task": "whago.tasks.prune_audit_log", "schedule": 3600},
}
# Append-only tables pruned by the tasks above: rows older than these days go, in batches of
# PRUNE_BATCH_SIZE rows (short transactions). Rows still needed are kept whatever their age: a
# webhook delivery still pending a retry, an audit entry still running. Webhook events are kept
# at least 2 days: stored acks settle messages whose send was interrupted (chips.sending).
WAHA_WEBHOOK_EVENT_RETENTION_DAYS = env.int("WAHA_WEBHOOK_EVENT_RETENTION_DAYS", default=7)
CHIPS_WEBHOOK_DELIVERY_RETENTION_DAYS = env.int("CHIPS_WEBHOOK_DELIVERY_RETENTION_DAYS", default=30)
AUDIT_LOG_RETENTION_DAYS = env.int("AUDIT_LOG_RETENTION_DAYS", default=365)
PRUNE_BATCH_SIZE = env.int("PRUNE_BATCH_SIZE", default=1000)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["whago.rest.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["whago.rest.HasTenant"],
    "DEFAULT_THROTTLE_CLASSES": ["whago.rest.ApiKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON bodies cleaned of NUL and lone surrogates (whago.text) as they are parsed.
    "DEFAULT_PARSER_CLASSES": ["whago.parsers.CleanJSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "whago.rest.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
# Outgoing HTTP to tenants' URLs (whago.safehttp): loopback targets allowed only where the
# receivers are local (the test script sets it); private addresses are refused even then.
OUTGOING_HTTP_ALLOW_LOOPBACK = env.bool("OUTGOING_HTTP_ALLOW_LOOPBACK", default=False)
# The tenant's outgoing webhook: seconds per attempt, attempts before giving up, first retry
# delay (doubles each time).
OUTGOING_WEBHOOK_TIMEOUT = env.float("OUTGOING_WEBHOOK_TIMEOUT", default=10.0)
OUTGOING_WEBHOOK_MAX_ATTEMPTS = env.int("OUTGOING_WEBHOOK_MAX_ATTEMPTS", default=8)
OUTGOING_WEBHOOK_BACKOFF_SECONDS = env.float("OUTGOING_WEBHOOK_BACKOFF_SECONDS", default=30.0)
# A pending delivery this late (never tried, or a retry past due) lost its task: beat queues it again.
OUTGOING_WEBHOOK_OVERDUE_SECONDS = env.int("OUTGOING_WEBHOOK_OVERDUE_SECONDS", default=120)
# Requests per API key ("120/min", "10/s").
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="120/min")
SPECTACULAR_SETTINGS = {
    "TITLE": "WHAGO API",
    "DESCRIPTION": "WhatsApp chips, messages and campaigns for your business.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and docs are public: no key needed, and a key given is not checked there.
    "SERVE_AUTHENTICATION": [],
    # Swagger UI served from our own static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # Health probes (load balancers, docker health checks) may ask over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# Content-Security-Policy (django-csp): scripts, styles, fonts and frames only from this site, no inline
# script or style (templates keep theirs in static/; htmx runs without eval, see base.html's htmx-config).
# QR codes are PNGs served by the site; Swagger UI's icons are data: images.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# The pages whose forms start a payment also allow sending the browser on to the gateways' checkout
# pages (a form's redirect is checked against form-action): Stripe, Mercado Pago, PayPal.
CSP_CHECKOUT_FORM_ACTION = env.list("CSP_CHECKOUT_FORM_ACTION", default=[
    "https://checkout.stripe.com", "https://*.mercadopago.com.br", "https://*.mercadopago.com",
    "https://*.paypal.com",
])

# --- WAHA containers (waha app) ------------------------------------------------------
# Where WAHA containers run: "local" (simulator processes, embedded mode), "docker",
# "swarm" (Docker Swarm services across nodes, docs/deploy.md) or "external" (WAHA servers
# operators registered in the admin, shared by every tenant).
WAHA_RUNTIME = env.str("WAHA_RUNTIME", default="local")
# Image of the docker runtime. Since WAHA 2026.6.1 the free image has the Plus features.
WAHA_IMAGE = env.str("WAHA_IMAGE", default="devlikeapro/waha:latest")
# The tier expected of new containers: "plus" (many named sessions) or "core" (only the
# session "default"). What a server really is gets read from it once it answers.
WAHA_ENGINE = env.str("WAHA_ENGINE", default="plus")
# Seconds after which an external server's version and tier are read again (it may be upgraded).
WAHA_CAPABILITIES_MAX_AGE = env.int("WAHA_CAPABILITIES_MAX_AGE", default=600)
# Simulator only: the WAHA it imitates ("plus", or "core-2024.10" for WAHA Core 2024.10.8).
WAHA_SIM_PROFILE = env.str("WAHA_SIM_PROFILE", default="")
# WhatsApp engine inside WAHA (NOWEB is the lightest: ~200 MB for 1 session, 4 GB for 50).
WAHA_WHATSAPP_ENGINE = env.str("WAHA_WHATSAPP_ENGINE", default="NOWEB")
# Sessions a Plus container holds (WAHA's sizing for NOWEB: 4 GB for 50 sessions).
WAHA_SESSIONS_PER_CONTAINER = env.int("WAHA_SESSIONS_PER_CONTAINER", default=50)
# Docker limits of each container: memory (docker syntax: 512m, 4g) and CPUs (float).
WAHA_MEMORY_LIMIT = env.str("WAHA_MEMORY_LIMIT", default="4g")
WAHA_CPU_LIMIT = env.float("WAHA_CPU_LIMIT", default=2.0)
# (Containers of a tenant take their plan's memory and CPUs instead; these are the fallback.)
# Processes a container may run, the size of each of its 3 log files, and the user it runs as
# (empty: the image's own; WAHA's images run as root).
WAHA_PIDS_LIMIT = env.int("WAHA_PIDS_LIMIT", default=512)
WAHA_LOG_MAX_SIZE = env.str("WAHA_LOG_MAX_SIZE", default="10m")
WAHA_CONTAINER_USER = env.str("WAHA_CONTAINER_USER", default="")
# Host ports handed to containers, reserved in the database: "first-last".
WAHA_PORT_RANGE = env.str("WAHA_PORT_RANGE", default="3100-3199")
# "host": host networking; "publish": the port published on 127.0.0.1 only;
# "network": attached to WAHA_DOCKER_NETWORK and reached by container name (compose).
WAHA_NETWORK_MODE = env.str("WAHA_NETWORK_MODE", default="publish")
WAHA_DOCKER_NETWORK = env.str("WAHA_DOCKER_NETWORK", default="")
# Address the app uses to reach containers in the host and publish modes.
WAHA_HOST = env.str("WAHA_HOST", default="127.0.0.1")
# Data directory inside a container, where its named volume is mounted.
WAHA_DATA_DIR = env.str("WAHA_DATA_DIR", default="/app/.sessions")
# What containers post their webhooks to (the container id and its URL token are appended).
WAHA_WEBHOOK_URL = (env.str("WAHA_WEBHOOK_URL", default="") or f"{SITE_URL}/api/v1/webhooks/waha").rstrip("/")
# How sessions are placed in containers: "per_tenant" (one container per tenant, filled up).
WAHA_PLACEMENT = env.str("WAHA_PLACEMENT", default="per_tenant")
# The FREE plan's tenants: "shared" (their sessions fill shared Plus containers of
# WAHA_SESSIONS_PER_CONTAINER sessions each) or "own" (a container each, like paying tenants).
WAHA_FREE_PLACEMENT = env.str("WAHA_FREE_PLACEMENT", default="shared")
# Label whago.instance on every container: several deployments (or test runs) can share
# one Docker engine and each touches only its own containers.
WHAGO_INSTANCE = env.str("WHAGO_INSTANCE", default="default")
# Seconds to wait for a new or restarted container to answer.
WAHA_READY_TIMEOUT = env.int("WAHA_READY_TIMEOUT", default=60)
# Alert rules of the ops sweep.
WAHA_ALERT_CPU_PERCENT = env.float("WAHA_ALERT_CPU_PERCENT", default=80.0)
WAHA_ALERT_MEMORY_PERCENT = env.float("WAHA_ALERT_MEMORY_PERCENT", default=90.0)
WAHA_ALERT_STOPPED_MINUTES = env.int("WAHA_ALERT_STOPPED_MINUTES", default=60)
# Minutes a container that should run may stay unreachable before the operators are alerted.
WAHA_ALERT_DOWN_MINUTES = env.int("WAHA_ALERT_DOWN_MINUTES", default=2)
# Seconds a container may fail its probes before its connected chips show as reconnecting.
WAHA_RECONNECTING_SECONDS = env.int("WAHA_RECONNECTING_SECONDS", default=20)
# Seconds the docker runtime waits for one answer of the Docker engine.
WAHA_DOCKER_TIMEOUT = env.int("WAHA_DOCKER_TIMEOUT", default=30)
# Threads a sweep (health, stats) uses over many containers.
WAHA_SWEEP_THREADS = env.int("WAHA_SWEEP_THREADS", default=64)
# Largest webhook body accepted, in bytes.
WAHA_WEBHOOK_MAX_BYTES = env.int("WAHA_WEBHOOK_MAX_BYTES", default=1024 * 1024)
# Runtime "swarm" (docs/deploy.md): each container a Swarm service pinned to a node.
# Nodes WAHA may run on: those with this label set to "true" when any node has it, else all.
WAHA_SWARM_NODE_LABEL = env.str("WAHA_SWARM_NODE_LABEL", default="whago.waha")
# The address WHAGO reaches every node's WAHA ports at, instead of each node's own address
# (label whago.address, else the address Swarm knows): 127.0.0.1 on a single-node swarm.
WAHA_SWARM_NODE_ADDRESS = env.str("WAHA_SWARM_NODE_ADDRESS", default="")
# Share of a container's memory limit reserved on its node (1.0: a node is never overcommitted).
WAHA_SWARM_MEMORY_RESERVATION = env.float("WAHA_SWARM_MEMORY_RESERVATION", default=1.0)
# Seconds a container may stay down on a node that is down before it is moved to another node
# (a drained or removed node's containers are moved at once).
WAHA_SWARM_NODE_LOST_SECONDS = env.int("WAHA_SWARM_NODE_LOST_SECONDS", default=300)
# WAHA Plus's PostgreSQL session store (WHATSAPP_SESSIONS_POSTGRESQL_URL), for every container:
# sessions then survive a container moving to another node. Empty: sessions on the data volume.
WAHA_SESSIONS_POSTGRESQL_URL = env.str("WAHA_SESSIONS_POSTGRESQL_URL", default="")

# --- Billing (billing app) -------------------------------------------------------
# Gateway credentials come from the environment; a gateway without them is not offered.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
MERCADOPAGO_ACCESS_TOKEN = env.str("MERCADOPAGO_ACCESS_TOKEN", default="")
MERCADOPAGO_WEBHOOK_SECRET = env.str("MERCADOPAGO_WEBHOOK_SECRET", default="")
PAYPAL_CLIENT_ID = env.str("PAYPAL_CLIENT_ID", default="")
PAYPAL_CLIENT_SECRET = env.str("PAYPAL_CLIENT_SECRET", default="")
PAYPAL_WEBHOOK_ID = env.str("PAYPAL_WEBHOOK_ID", default="")
PAYPAL_MODE = env.str("PAYPAL_MODE", default="sandbox")
# The local fake gateway (embedded mode, demos). Refused in production.
BILLING_SANDBOX_ENABLED = env.bool("BILLING_SANDBOX_ENABLED", default=not PRODUCTION)
# Seconds a signed webhook stays valid (Stripe's and Mercado Pago's timestamps, PayPal's transmission time).
BILLING_WEBHOOK_TOLERANCE = env.int("BILLING_WEBHOOK_TOLERANCE", default=300)
# Message credit packs sold in the portal: "credits:price_brl" pairs.
BILLING_CREDIT_PACKS = env.list("BILLING_CREDIT_PACKS", default=["1000:49.90", "5000:199.90", "20000:599.90"])
# Days a prepaid plan (PIX, Mercado Pago, PayPal, sandbox) stays past due before going back to FREE.
BILLING_GRACE_DAYS = env.int("BILLING_GRACE_DAYS", default=3)
# Who issues the receipts (WHAGO's company), printed above the customer's CNPJ and address.
BILLING_ISSUER_NAME = env.str("BILLING_ISSUER_NAME", default="WHAGO Tecnologia Ltda.")
BILLING_ISSUER_CNPJ = env.str("BILLING_ISSUER_CNPJ", default="")
BILLING_ISSUER_ADDRESS = env.str("BILLING_ISSUER_ADDRESS", default="")
if PRODUCTION and BILLING_SANDBOX_ENABLED:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("BILLING_SANDBOX_ENABLED must be off in production: sandbox payments are fake.")

# --- Proxies (proxies app) -------------------------------------------------------
# What the health sweep fetches through each proxy (any answer below 400 is healthy).
PROXY_CHECK_URL = env.str("PROXY_CHECK_URL", default="https://www.google.com/generate_204")
# Seconds allowed for the connection, the handshake and the request, each.
PROXY_CHECK_TIMEOUT = env.float("PROXY_CHECK_TIMEOUT", default=10.0)
# Proxies checked at the same time by one sweep.
PROXY_CHECK_CONCURRENCY = env.int("PROXY_CHECK_CONCURRENCY", default=8)
# Consecutive failed checks after which a proxy is unhealthy and its sessions move.
PROXY_FAILURE_THRESHOLD = env.int("PROXY_FAILURE_THRESHOLD", default=3)
# Days of check history kept.
PROXY_CHECK_RETENTION_DAYS = env.int("PROXY_CHECK_RETENTION_DAYS", default=14)

# --- Chips and messages (chips app) ---------------------------------------------------
# Attempts of a send whose container is down or whose session is not ready, before the
# message is FAILED (quota given back); the first retry waits this long, then doubles.
CHIPS_SEND_MAX_ATTEMPTS = env.int("CHIPS_SEND_MAX_ATTEMPTS", default=6)
CHIPS_SEND_BACKOFF_SECONDS = env.float("CHIPS_SEND_BACKOFF_SECONDS", default=10.0)
# Largest image or document a message may carry, in bytes (sent to WAHA as base64).
CHIPS_MAX_MEDIA_BYTES = env.int("CHIPS_MAX_MEDIA_BYTES", default=16 * 1024 * 1024)
# A request body may carry such a file as base64 in JSON (4/3 of its size) plus the rest.
DATA_UPLOAD_MAX_MEMORY_SIZE = CHIPS_MAX_MEDIA_BYTES * 4 // 3 + 1024 * 1024
# Files contacts send (chips/inbound_media.py): largest kept, in MB; seconds per download request;
# first wait before another try when WAHA does not answer (then doubled, 5 tries).
CHIPS_INBOUND_MEDIA_MAX_MB = env.float("CHIPS_INBOUND_MEDIA_MAX_MB", default=16.0)
CHIPS_INBOUND_MEDIA_TIMEOUT_SECONDS = env.float("CHIPS_INBOUND_MEDIA_TIMEOUT_SECONDS", default=30.0)
CHIPS_INBOUND_MEDIA_BACKOFF_SECONDS = env.float("CHIPS_INBOUND_MEDIA_BACKOFF_SECONDS", default=10.0)
# A received file with neither its file nor an error this long after its webhook lost its fetch task
# (queued while the broker was down): beat's 'chips: requeue lost media fetches' queues it again.
CHIPS_INBOUND_MEDIA_LOST_SECONDS = env.float("CHIPS_INBOUND_MEDIA_LOST_SECONDS", default=120.0)
# Seconds between the portal's refreshes of a chip's status and QR code (htmx polling).
CHIPS_POLL_SECONDS = env.float("CHIPS_POLL_SECONDS", default=2.0)
# Crash tests only: seconds a send task sleeps right after WAHA accepted the message and
# before recording it (the window in which a killed worker must not cause a second send).
CHIPS_SEND_PAUSE_AFTER_HTTP = env.float("CHIPS_SEND_PAUSE_AFTER_HTTP", default=0.0)
# The send path (chips/sending.py). A sender leases the messages it sends for this many seconds,
# renewed while it works: a worker that dies lets its lease expire, and the sweep (every
# CHIPS_SEND_SWEEP_SECONDS, set with the beat schedule above) settles its messages from evidence.
# Must outlast one call to WAHA (the client's read timeout is 30 s; renewed 25 s before the end).
CHIPS_SEND_LEASE_SECONDS = env.float("CHIPS_SEND_LEASE_SECONDS", default=30.0)
# A sender writes its outcomes (and renews its leases) every this many messages or seconds, whichever
# comes first: a few statements per batch instead of one per message.
CHIPS_SEND_RECORD_EVERY = env.int("CHIPS_SEND_RECORD_EVERY", default=50)
CHIPS_SEND_RECORD_SECONDS = env.float("CHIPS_SEND_RECORD_SECONDS", default=1.0)
# A queued message nobody leased for this long has lost its task (a broker restart): it gets another.
CHIPS_SEND_REQUEUE_SECONDS = env.float("CHIPS_SEND_REQUEUE_SECONDS", default=60.0)
# An interrupted send whose chip's WAHA cannot be asked (unreachable, session not ready) is asked
# again at every sweep; past this many seconds after the attempt it fails as "may have been delivered".
CHIPS_SEND_SETTLE_GIVE_UP_SECONDS = env.float("CHIPS_SEND_SETTLE_GIVE_UP_SECONDS", default=600.0)
# A chip still PROVISIONING with no attempt for this many seconds is tried again by the
# provisioning sweep (the Docker engine or its server came back); past the timeout it fails.
CHIPS_PROVISION_RETRY_SECONDS = env.int("CHIPS_PROVISION_RETRY_SECONDS", default=120)
CHIPS_PROVISION_TIMEOUT_MINUTES = env.int("CHIPS_PROVISION_TIMEOUT_MINUTES", default=60)
# Redis broker: seconds before a task taken by a worker that died is given to another worker,
# and seconds between the workers' looks for such tasks (kombu's default period: 100 s).
if CELERY_BROKER_URL != "filesystem://":
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        visibility_timeout=env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
        unacked_restore_interval=env.int("CELERY_RESTORE_INTERVAL", default=100),
        unacked_restore_throttle=1,
        # A broker that hangs instead of refusing does not hold a request or a task for ever.
        socket_connect_timeout=env.float("CELERY_BROKER_CONNECT_TIMEOUT", default=5.0),
        socket_timeout=env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=15.0),
    )

# --- Contacts and campaigns (chips app: contacts.py, campaigns.py, dispatch.py) ------------------
# Time zone of campaign send windows, schedules and imported consent dates.
CAMPAIGN_TIME_ZONE = env.str("CAMPAIGN_TIME_ZONE", default="America/Sao_Paulo")
# Highest pace (messages per minute per chip) per plan code, "*" for other plans; 0 = no limit.
CAMPAIGN_PACE_LIMITS = env.list("CAMPAIGN_PACE_LIMITS", default=["FREE=20", "BUSINESS=60", "ENTERPRISE=120", "*=20"])
# Recipients a lane claims at once when the pace has no limit (paced lanes claim one per slot).
CAMPAIGN_BATCH_SIZE = env.int("CAMPAIGN_BATCH_SIZE", default=100)
# Seconds a lane task sends before handing over to a follow-up task (keeps tasks short).
CAMPAIGN_LANE_SLICE_SECONDS = env.float("CAMPAIGN_LANE_SLICE_SECONDS", default=20.0)
# Seconds a lane's lease lasts without renewal: after a worker dies, its recipients and its
# lane are taken over by the kick once the lease expired.
CAMPAIGN_LEASE_SECONDS = env.float("CAMPAIGN_LEASE_SECONDS", default=60.0)
# Longest pace wait a lane sleeps through; longer waits continue in a delayed task.
CAMPAIGN_INLINE_WAIT_SECONDS = env.float("CAMPAIGN_INLINE_WAIT_SECONDS", default=2.0)
# Times a recipient goes back to the pool because its chip could not take the message.
CAMPAIGN_MAX_RETRIES = env.int("CAMPAIGN_MAX_RETRIES", default=3)
# Seconds a campaign leaves a chip alone after it refused a send (session down behind our back).
CAMPAIGN_CHIP_BACKOFF_SECONDS = env.float("CAMPAIGN_CHIP_BACKOFF_SECONDS", default=30.0)
# Hours after a campaign message during which an answer counts as a reply to it.
CAMPAIGN_REPLY_WINDOW_HOURS = env.int("CAMPAIGN_REPLY_WINDOW_HOURS", default=72)
# Seconds between the portal's refreshes of a campaign's progress (htmx polling).
CAMPAIGN_POLL_SECONDS = env.float("CAMPAIGN_POLL_SECONDS", default=2.0)
# Contact imports: largest file (bytes) and most rows per file.
CONTACTS_IMPORT_MAX_BYTES = env.int("CONTACTS_IMPORT_MAX_BYTES", default=10 * 1024 * 1024)
CONTACTS_IMPORT_MAX_ROWS = env.int("CONTACTS_IMPORT_MAX_ROWS", default=50_000)

# --- Operators' console (Django admin) ------------------------------------------------
# Seconds the admin waits for the worker to finish an action before saying it still runs.
OPS_ACTION_WAIT_SECONDS = env.float("OPS_ACTION_WAIT_SECONDS", default=5.0)
# Log lines shown on a container's page, and seconds the page waits for the worker to read them.
OPS_LOG_TAIL_LINES = env.int("OPS_LOG_TAIL_LINES", default=200)
OPS_LOG_WAIT_SECONDS = env.float("OPS_LOG_WAIT_SECONDS", default=3.0)
# Orphans younger than this are left alone by the console's cleanup (they may be being created).
OPS_ORPHAN_GRACE_MINUTES = env.int("OPS_ORPHAN_GRACE_MINUTES", default=10)
# Seconds the dashboard's 7-day chart is kept before it is aggregated again (0: every time).
OPS_CHART_CACHE_SECONDS = env.int("OPS_CHART_CACHE_SECONDS", default=300)
# Seconds a tenant's suspension waits for its sessions' STOPPED webhooks before stopping the container.
OPS_SUSPEND_EVENTS_WAIT_SECONDS = env.float("OPS_SUSPEND_EVENTS_WAIT_SECONDS", default=5.0)
# Admin lists count rows exactly up to this many; above it they show the database's estimate.
ADMIN_EXACT_COUNT_LIMIT = env.int("ADMIN_EXACT_COUNT_LIMIT", default=10000)
# Operators act on every tenant's containers: the admin (and /status/) then asks for a second factor, the
# code of an authenticator app (TOTP, django-otp), set up with `manage.py operator_totp <email>`.
# On in production; off in the embedded mode of `make run`, whose printed demo login has no device.
ADMIN_REQUIRE_2FA = env.bool("ADMIN_REQUIRE_2FA", default=PRODUCTION)
OTP_TOTP_ISSUER = SITE_NAME  # the name the authenticator app shows next to the code
