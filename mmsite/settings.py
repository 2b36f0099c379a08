"""Settings come from the environment (MM_* variables, documented in README.md)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlparse

from mmsite.lan import default_allowed_hosts
from mmsite.proxies import parse_trusted_proxies
from mmsite.time_zone import machine_time_zone

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DATA_DIR = Path(os.environ.get("MM_DATA_DIR") or BASE_DIR / "var").expanduser().resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """MM_SECRET_KEY, else one generated on first run and kept in the data dir."""
    if key := os.environ.get("MM_SECRET_KEY"):
        return key
    key_file = DATA_DIR / "secret_key"
    try:
        return key_file.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("MM_DEBUG")
HOST = os.environ.get("MM_HOST", "127.0.0.1")
PORT = int(os.environ.get("MM_PORT", "8000"))
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("MM_ALLOWED_HOSTS", "").split(",") if h.strip()
] or default_allowed_hosts(HOST)
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("MM_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]
# Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (mmsite/proxies.py: its
# middleware drops the latter from anyone else before Django reads it here).
MM_TRUSTED_PROXIES = parse_trusted_proxies(os.environ.get("MM_TRUSTED_PROXIES", ""))
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Where the models are (DESIGN.md §4); read by models_app.roots.
MM_COMFYUI_PATH = os.environ.get("MM_COMFYUI_PATH", "")
MM_EXTRA_MODEL_PATHS = os.environ.get("MM_EXTRA_MODEL_PATHS", "")
MM_MODEL_ROOTS = os.environ.get("MM_MODEL_ROOTS", "")
MM_CIVITAI_URL = os.environ.get("MM_CIVITAI_URL", "https://civitai.com")
HF_ENDPOINT = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
MM_TRASH_DAYS = float(os.environ.get("MM_TRASH_DAYS", "7"))
MM_HEARTBEAT_TIMEOUT = float(os.environ.get("MM_HEARTBEAT_TIMEOUT", "30"))
MM_DOWNLOAD_CONCURRENCY = int(os.environ.get("MM_DOWNLOAD_CONCURRENCY", "4"))
MM_STALL_TIMEOUT = float(os.environ.get("MM_STALL_TIMEOUT", "60"))
MM_DOWNLOAD_ATTEMPTS = int(os.environ.get("MM_DOWNLOAD_ATTEMPTS", "8"))
MM_THUMBNAIL_DIR = DATA_DIR / "thumbnails"
MM_SCAN_ON_START = env_bool("MM_SCAN_ON_START", True)
# Minutes after a scan before the worker scans the changed files again, quietly (0: never).
MM_SCAN_EVERY = float(os.environ.get("MM_SCAN_EVERY", "15"))
# Hours after a check for updates before the worker asks Civitai again, quietly (0: only when asked).
MM_UPDATES_EVERY = float(os.environ.get("MM_UPDATES_EVERY", "0"))
MM_PROGRESS_INTERVAL = float(os.environ.get("MM_PROGRESS_INTERVAL", "1.0"))

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "mmsite",
    "models_app",
    "downloads_app",
]

MIDDLEWARE = [
    "mmsite.proxies.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "mmsite.nul.RefuseNulMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "mmsite.auth.ApiTokenMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "mmsite.auth.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "mmsite.urls"
ASGI_APPLICATION = "mmsite.asgi.application"

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
                "mmsite.preferences.preferences",
            ],
        },
    },
]


def _database(url: str) -> dict[str, object]:
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            # WAL lets the worker write while pages read; IMMEDIATE avoids lock upgrades that fail
            # with "database is locked" under concurrent writers.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"MM_DATABASE_URL must be postgres://…, not {parsed.scheme}://")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")),
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


DATABASES = {"default": _database(os.environ.get("MM_DATABASE_URL", ""))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_redis_url = os.environ.get("MM_REDIS_URL", "")
CHANNEL_LAYERS = {
    "default": (
        {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_redis_url], "capacity": 1500, "expiry": 30},
        }
        if _redis_url
        else {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    )
}

# Failed logins are counted in "logins" (mmsite/login_throttle.py): in Redis when several processes
# serve the app, so that each does not count apart.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "logins": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _redis_url}
        if _redis_url
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "logins"}
    ),
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "library"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = 60 * 60 * 24 * 30
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Strict"
CSRF_FAILURE_VIEW = "mmsite.views.csrf_failure"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = machine_time_zone()
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Served straight from the app and package folders: no collectstatic step for `make run`.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "mm": {"handlers": ["console"], "level": os.environ.get("MM_LOG_LEVEL", "INFO")},
        "django.request": {"handlers": ["console"], "level": "ERROR"},
    },
}
