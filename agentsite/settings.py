"""Settings for agentsite, read from the environment (and `.env` when present).

Every variable is documented in `.env.example`; development needs none of them.
"""

from pathlib import Path

import django_stubs_ext
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from . import __version__, logs
from .env import (
    database_from_url,
    env_bool,
    env_int,
    env_list,
    env_str,
    load_dotenv,
    mcp_servers,
    redis_namespace,
)

# Lets the admin classes name their model (`admin.ModelAdmin[Room]`) for mypy; Django's
# own classes are not subscriptable at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env")

# Core
# Off unless asked for: a production box without the variable must not run the
# development key nor show technical 500 pages. `make run` and the tests turn it on.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG=0")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Its configuration checks (the middleware does the serving).
    "servestatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "csp",
    "chat",
    "tasks",
]

# Our own user model from the start (Django asks for one before a deployment has
# data): Django's user as it is, in the chat app, free to grow fields later.
AUTH_USER_MODEL = "chat.User"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files before sessions and auth: they need neither.
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "chat.lockout.LoginLockoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, so it sees what views raise first: an outage answers 503
    # (agentsite/unavailable.py).
    "agentsite.unavailable.OutageMiddleware",
]

ROOT_URLCONF = "agentsite.urls"
ASGI_APPLICATION = "agentsite.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chat.context_processors.demo_mode",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        BASE_DIR,
        # PostgreSQL connections per process (a psycopg pool); 0 turns pooling off.
        pool_size=env_int("DB_POOL_SIZE", 20),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files: `manage.py collectstatic --noinput` writes hashed and gzipped copies
# to STATIC_ROOT, which servestatic serves (ASGI-native) with far-future caching of the
# hashed names. With DEBUG on it serves the source files and rereads them.
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "agentsite.storage.StaticStorage"},
}

# Request bodies past this many bytes answer 413 before the app reads them (0: no
# limit; a proxy in front may set its own, smaller one).
REQUEST_MAX_BYTES = env_int("REQUEST_MAX_BYTES", 1024 * 1024)

# Production hardening: only where DEBUG is off, so local http works.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers probe the health check over plain HTTP, and a 301 is no answer; so
# do readiness probes and Prometheus (contract: "Operating it").
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = 0 if DEBUG else env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp): scripts and styles from our own files only.
# The pages have no inline script (the room's snapshot is JSON data, json_script) and
# no inline style; 'self' in connect-src covers the room's WebSocket (ws:/wss: to the
# same host, CSP Level 3). Images: ours, and the empty data: favicon.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Logging: `text`, or `json` (one object per line, with the ids of the request,
# action or delivery at hand and the trace's; agentsite/logs.py).
LOG_FORMAT = env_str("LOG_FORMAT", "text").lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be text or json")
LOGGING = logs.config(fmt=LOG_FORMAT, level=env_str("LOG_LEVEL", "INFO").upper())

# Sentry: errors of the web processes and the workers, when SENTRY_DSN is set (the
# `sentry` extra installs sentry-sdk); not even imported otherwise.
SENTRY_DSN = env_str("SENTRY_DSN")
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        environment=env_str("SENTRY_ENVIRONMENT", "production"),
        send_default_pii=False,
    )

# Operating it (contract: "Operating it")
# The bearer token of GET /metrics; unset, /metrics answers 404.
METRICS_TOKEN = env_str("METRICS_TOKEN")
# Seconds: how recent a worker's heartbeat and beat's tick must be for /readyz.
READYZ_MAX_AGE = env_int("READYZ_MAX_AGE", 30)

# Redis: one server for the broker, the room channels and the live state.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Every key, channel and queue starts with REDIS_NAMESPACE: REDIS_PREFIX and a hash of
# the database, so that several deployments (or a test run next to `make run`) share
# one Redis without hearing each other, even with one prefix (contract: "Processes
# and settings"). Setting REDIS_NAMESPACE itself is for the test harness only, whose
# processes use another DATABASE_URL than the pytest process that started them.
REDIS_PREFIX = env_str("REDIS_PREFIX", "agentsite")
REDIS_NAMESPACE = env_str("REDIS_NAMESPACE") or redis_namespace(
    REDIS_PREFIX, DATABASES["default"]
)

# Shared across processes: REST throttling counts must agree between web processes.
CACHES = {
    "default": {
        "BACKEND": "chat.cache.SharedRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{REDIS_NAMESPACE}:cache",
    }
}

# Celery
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_DEFAULT_QUEUE = f"{REDIS_NAMESPACE}.tasks"
# Model calls and tool calls wait in queues of their own, so that a deployment can
# give each its own workers (WORKER_QUEUES=model or tools) and a slow tool never waits
# behind streams, nor the other way round. A worker consumes both unless told.
CELERY_MODEL_QUEUE = f"{REDIS_NAMESPACE}.model"
CELERY_TOOLS_QUEUE = f"{REDIS_NAMESPACE}.tools"
CELERY_TASK_ROUTES = {
    "agent.model_step": {"queue": CELERY_MODEL_QUEUE},
    "agent.tool_call": {"queue": CELERY_TOOLS_QUEUE},
    "agent.sweep": {"queue": CELERY_TOOLS_QUEUE},
    # Webhook POSTs and mail: waiting on the network, like tool calls.
    "notify.deliver": {"queue": CELERY_TOOLS_QUEUE},
}
CELERY_TASK_QUEUES = [
    Queue(name)
    for role, name in (
        ("model", CELERY_MODEL_QUEUE),
        ("tools", CELERY_TOOLS_QUEUE),
        # Anything not routed above (no task of ours; Celery's own, the bench's).
        ("default", CELERY_TASK_DEFAULT_QUEUE),
    )
    if role in env_list("WORKER_QUEUES", ["model", "tools", "default"])
]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# There is no result backend; Celery still builds its (disabled) backend once per
# thread unless told it may share it, and Django runs every request on a new thread:
# 4-5 ms of entry-point scanning per enqueue (`make bench`, turn overhead).
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Not on connection loss: the threads pool cannot stop a running task ("does not
# implement kill_job" crashed the consumer's reconnect). A task delivered before the
# loss finishes; its ack may be lost, so the broker redelivers it after the visibility
# timeout, and its claim then finds the work done.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Our own leases and sweeps recover crashed work within seconds; the broker's
    # redelivery is only the last resort, so its timeout can stay long.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    "unacked_restore_interval": env_int("CELERY_RESTORE_INTERVAL", 10),
    "unacked_restore_throttle": env_int("CELERY_RESTORE_THROTTLE", 10),
    # A broker that vanishes without closing the connection (failover) must not
    # hang a publish forever.
    "socket_timeout": 30,
    "socket_connect_timeout": 5,
    "global_keyprefix": f"{REDIS_NAMESPACE}:",
}
# Task events, so that Flower (and `celery events`) see every task, and the worker's
# heartbeat, on which it says it consumes (/readyz; tasks.tasks).
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BEAT_SCHEDULE = {
    "sweep": {
        "task": "agent.sweep",
        "schedule": float(env_int("AGENT_SWEEP_SECONDS", 5)),
    },
}

# Channels
# No channel layer: room events travel on one Redis channel per room, which each web
# process subscribes to once and fans out to its watchers (chat.hub); measured in
# docs/performance.md against a consumer per watcher on channels_redis.
# A watcher whose socket stops draining is closed (4408) past this many queued frames.
WS_MAX_BACKLOG = env_int("WS_MAX_BACKLOG", 1000)
# Room sockets one user may hold open at once, over every web process (contract:
# "Limits"); one more is refused (4429). Each socket costs a subscription slot, a
# snapshot and memory in a web process; a person has a few tabs, not dozens.
WS_MAX_SOCKETS_PER_USER = env_int("WS_MAX_SOCKETS_PER_USER", 20)
# AG-UI streams (POST /api/rooms/<slug>/agui) one user may hold open at once, over
# every web process; one more answers 429. While nothing else is sent, a stream
# sends a keep-alive comment this often (seconds).
AGUI_MAX_STREAMS_PER_USER = env_int("AGUI_MAX_STREAMS_PER_USER", 10)
AGUI_KEEPALIVE_SECONDS = env_int("AGUI_KEEPALIVE_SECONDS", 15)
# A web process renews its sockets' slots (in Redis) every third of this; one killed
# without closing them frees them this long after its last renewal.
WS_SOCKET_TTL_SECONDS = env_int("WS_SOCKET_TTL_SECONDS", 90)

# Proxies in front of the web processes (load balancer, nginx): the client's address
# is X-Forwarded-For's entry this many from the right; 0 trusts none of it.
TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0)
# Failed logins per client address and username before a lockout (four times as many
# per address, whatever the username), and how long it lasts.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900)

# Days an API token (POST /api/auth/token) works; DELETE /api/auth/token ends it
# sooner, as does deleting it in the admin.
API_TOKEN_DAYS = env_int("API_TOKEN_DAYS", 30)

# REST
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an unauthenticated call then answers 401 with a challenge.
        "chat.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "chat.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    # Throttles key anonymous clients on their address: never on what they claim.
    "NUM_PROXIES": TRUSTED_PROXIES,
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("API_THROTTLE_ANON", "60/min"),
        "user": env_str("API_THROTTLE_USER", "600/min"),
    },
    # JSON only: the admin and the pages post forms through Django, not DRF, and a
    # JSON object (edited arguments) cannot be form-encoded; offering forms made
    # generated clients send multipart. Anything else answers 415.
    "DEFAULT_PARSER_CLASSES": ["chat.api.parsers.SafeJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "agentsite API",
    "DESCRIPTION": "Rooms, agent requests and the actions people approve.",
    "VERSION": __version__,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ActionStatusEnum": "chat.models.Action.Status",
        "RequestStatusEnum": "chat.models.Request.Status",
        "TriggerSourceEnum": "chat.models.Trigger.Source",
        "WebhookFormatEnum": "chat.models.Webhook.Format",
    },
}

# OpenAI: without a key, the local stand-in (`standins/openai_server.py`) is used.
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str(
    "OPENAI_BASE_URL",
    "https://api.openai.com/v1" if OPENAI_API_KEY else "http://127.0.0.1:8001/v1",
)
OPENAI_MODEL = env_str("OPENAI_MODEL", "gpt-4o-mini")
OPENAI_TIMEOUT = float(env_int("OPENAI_TIMEOUT", 60))

# Linear: without a key, the local stand-in (`standins/linear_server.py`) is used.
LINEAR_API_KEY = env_str("LINEAR_API_KEY")
LINEAR_API_URL = env_str(
    "LINEAR_API_URL",
    "https://api.linear.app/graphql"
    if LINEAR_API_KEY
    else "http://127.0.0.1:8002/graphql",
)
LINEAR_TIMEOUT = float(env_int("LINEAR_TIMEOUT", 15))
# The longest Linear may hold an update or a delete before applying it. Linear
# documents no bound: this one is chosen. A retry waits until a write its earlier
# attempt sent can no longer land (the client's bound on reaching Linear plus this)
# before it reads back (docs/recovery.md).
LINEAR_HOLD_SECONDS = float(env_int("LINEAR_HOLD_SECONDS", 10))
# GitHub issues of one repository (contract: "Tool packs"): on when both the token
# and the repository are set; `make run` points them at `standins/github_server.py`.
GITHUB_TOKEN = env_str("GITHUB_TOKEN")
GITHUB_REPOSITORY = env_str("GITHUB_REPOSITORY")
GITHUB_API_URL = env_str("GITHUB_API_URL", "https://api.github.com").rstrip("/")
# Seconds to wait for each read of an answer; for each step that brings a request
# to GitHub (a pooled connection, connecting, writing) the connect timeout.
GITHUB_TIMEOUT = float(env_int("GITHUB_TIMEOUT", 15))
GITHUB_CONNECT_TIMEOUT = float(env_int("GITHUB_CONNECT_TIMEOUT", 5))
# GitHub ends a request it has processed for ten seconds (documented): a write it
# holds lands within that or never. A retry waits this plus the connect bound after
# an earlier attempt's write before it reads back (docs/recovery.md).
GITHUB_HOLD_SECONDS = float(env_int("GITHUB_HOLD_SECONDS", 10))
# MCP servers whose tools the agent is offered, as `<name>__<tool>`: a JSON list of
# {"name", "url", "headers"?} (Streamable HTTP) or {"name", "command", "env"?} (stdio),
# with "trust_annotations": true for a server whose annotations (readOnlyHint) are
# believed: without it, every tool of the server asks for approval.
AGENT_MCP_SERVERS = mcp_servers(env_str("AGENT_MCP_SERVERS"))
# Seconds for one MCP call (connecting, listing, a tool call) before it fails.
MCP_TIMEOUT = float(env_int("MCP_TIMEOUT", 30))
# The stand-ins still want a credential on the wire, like the real services.
DEMO_MODE = not (OPENAI_API_KEY and LINEAR_API_KEY)

# Agent
AGENT_APPROVAL_TIMEOUT = env_int("AGENT_APPROVAL_TIMEOUT", 24 * 3600)
AGENT_MAX_STEPS = env_int("AGENT_MAX_STEPS", 10)
# Requests one user may have queued or running at once (contract: "Limits").
AGENT_MAX_ACTIVE_PER_USER = env_int("AGENT_MAX_ACTIVE_PER_USER", 5)
# Actions pending a decision that one user's requests may have before that user may
# post another request: each one mails and webhooks every approver, and the room's
# snapshot lists every one (contract: "Limits").
AGENT_MAX_PENDING_PER_USER = env_int("AGENT_MAX_PENDING_PER_USER", 20)
AGENT_MAX_INPUT_CHARS = env_int("AGENT_MAX_INPUT_CHARS", 10_000)
# Tool calls one model answer may make; the rest are answered with an error.
AGENT_MAX_TOOL_CALLS = env_int("AGENT_MAX_TOOL_CALLS", 8)
# Model tokens (`usage.total_tokens`) one user's requests may spend per UTC day;
# 0: no limit. Past it a new request answers 429. Finite by default, so that a
# script in a loop or a stolen token costs a bounded bill: one model call sends at
# most AGENT_CONTEXT_CHARS (24,000 characters, about 6,000 tokens), a turn makes a
# few calls, so 500,000 is about 40 turns at a full context and far more short ones:
# a busy person's day, and a few dollars on a large model.
AGENT_DAILY_TOKENS_PER_USER = env_int("AGENT_DAILY_TOKENS_PER_USER", 500_000)
# Characters of conversation (history and this turn) sent to the model at most.
AGENT_CONTEXT_CHARS = env_int("AGENT_CONTEXT_CHARS", 24_000)
AGENT_HISTORY_MESSAGES = env_int("AGENT_HISTORY_MESSAGES", 30)
AGENT_APPROVAL_TOOLS = env_list(
    "AGENT_APPROVAL_TOOLS",
    ["create_issue", "update_issue", "delete_issue", "add_comment"],
)
# A worker holding a turn renews its lease; a lease that runs out means the worker
# died, and the sweep hands the work to another one.
AGENT_LEASE_SECONDS = env_int("AGENT_LEASE_SECONDS", 20)
AGENT_MAX_ATTEMPTS = env_int("AGENT_MAX_ATTEMPTS", 6)
# Work left without a lease this long (its enqueue was lost) is picked up by the sweep.
AGENT_SWEEP_GRACE_SECONDS = env_int("AGENT_SWEEP_GRACE_SECONDS", 10)
# Streamed text leaves at once unless a delta left less than this long ago; only a
# model faster than that gets its tokens merged (`make bench`: merging at 30 ms cost
# watchers 15 ms p50 while sending every token cost the web process little).
AGENT_DELTA_INTERVAL_MS = env_int("AGENT_DELTA_INTERVAL_MS", 5)
# Each worker process streams every model call it holds on one event loop
# (`tasks.engine`): at most this many at once (a Celery task waits for room), with
# this many threads beside the loop for the database writes that end a stream.
AGENT_STREAMS_PER_PROCESS = env_int("AGENT_STREAMS_PER_PROCESS", 1000)
AGENT_ENGINE_THREADS = env_int("AGENT_ENGINE_THREADS", 8)

# Triggers and schedules (contract: "Triggers and schedules")
# Requests one trigger may post per 60 s; past it a delivery answers 429.
TRIGGER_MAX_PER_MINUTE = env_int("TRIGGER_MAX_PER_MINUTE", 10)
# A delivery's body past this many bytes answers 413, read no further.
TRIGGER_MAX_BYTES = env_int("TRIGGER_MAX_BYTES", 1024 * 1024)
# Characters of one value a prompt template inserts, before the cut's "…".
TRIGGER_VALUE_MAX_CHARS = env_int("TRIGGER_VALUE_MAX_CHARS", 2000)
# Days a delivery id is kept, so that a sender's redelivery posts nothing twice.
TRIGGER_DELIVERY_DAYS = env_int("TRIGGER_DELIVERY_DAYS", 30)
TRIGGERS_PER_ROOM = env_int("TRIGGERS_PER_ROOM", 20)
SCHEDULES_PER_ROOM = env_int("SCHEDULES_PER_ROOM", 20)
# Seconds a passed slot may be late and still run once (after an outage only the
# latest passed slot can); the sweep (AGENT_SWEEP_SECONDS) posts due slots.
SCHEDULE_CATCH_UP = env_int("SCHEDULE_CATCH_UP", 300)

# Reaching approvers (contract: "Reaching approvers outside the room")
# The origin of the links in mail and webhooks (`decide_url`).
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# Mail goes to the console unless an SMTP server is named.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "agentsite <agentsite@localhost>")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
# Webhooks to loopback, private, link-local or metadata addresses are refused unless
# this is set (or DEBUG is on): a room's approver must not reach the host's network.
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
# Attempts of a delivery, the first included, and the backoff's base: the waits are
# base * 2**n with jitter (4, 8, 16, 32, 64 s: six attempts over two minutes).
DELIVERY_MAX_ATTEMPTS = env_int("DELIVERY_MAX_ATTEMPTS", 6)
DELIVERY_RETRY_BASE = float(env_str("DELIVERY_RETRY_BASE", "4"))
