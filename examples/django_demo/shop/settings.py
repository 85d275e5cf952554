"""Settings of the demo shop. The database is PostgreSQL when DATABASE_URL
holds a DSN (postgresql://... or libpq's key=value form), else SQLite at
RETRACE_DEMO_SQLITE (default: recordings/django_shop.sqlite3 in the repository).

Not RETRACE_DEMO_DSN or the like: a recording redacts variables whose names
look like secrets (*DSN*, *PASSWORD* ...), and a replay that parsed the
redacted value would configure another database than the recorded run did."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "demo-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["orders"]
MIDDLEWARE = ["orders.middleware.log_responses"]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
RATES_URL = os.environ.get("RETRACE_DEMO_RATES_URL", "http://127.0.0.1:5001/rates")

DSN = os.environ.get("DATABASE_URL")
if DSN:
    from psycopg2.extensions import parse_dsn
    _pg = parse_dsn(DSN)
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _pg.get("dbname", ""), "USER": _pg.get("user", ""),
        "PASSWORD": _pg.get("password", ""), "HOST": _pg.get("host", ""),
        "PORT": _pg.get("port", ""),
    }}
else:
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("RETRACE_DEMO_SQLITE",
                               BASE_DIR.parent.parent / "recordings" / "django_shop.sqlite3"),
        # concurrent orders queue for the write lock instead of failing
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }}

# Every log line on stderr, with the process id (gunicorn runs several):
# requests, answers, and the traceback of a view that crashed.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"line": {"format": "%(asctime)s [%(process)d] %(levelname)s %(name)s: "
                                      "%(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {"django": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
}
