"""Settings of the SessionHub Django demo: sessions in Redis through SessionHub.

Redis comes from ``REDIS_URL`` (or ``config.yaml`` in the working directory); no database is
needed. Only the two session lines matter for your own project.
"""

import os

from sessionhub.config import load_settings

DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("SECRET_KEY", "django-demo-secret-key-change-me-0123456789")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "django_app.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# The two session lines:
SESSION_ENGINE = "sessionhub.integrations.django"
SESSIONHUB = load_settings()  # REDIS_URL / config.yaml; SECRET_KEY above signs the cookies
