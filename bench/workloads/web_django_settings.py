"""Settings of the web benchmark's Django service: the demo shop's
(examples/django_demo/shop/settings.py), whose invoice view bench/web.py
serves with gunicorn, with persistent database connections, as a service
behind a connection pool has: Django's default opens one per request."""
from shop.settings import *  # noqa: F403

DATABASES["default"]["CONN_MAX_AGE"] = None  # noqa: F405
