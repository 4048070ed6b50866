"""Settings for the webhook benchmark's gunicorn: the whole app, plus a bare view to compare with.

DJANGO_SETTINGS_MODULE=tests.chips.bench_site serves every URL of WHAGO (same middleware, same
database) and POST /bench/bare (tests/chips/bench_urls.py), which does nothing and answers 200.
"""
from whago.settings import *  # noqa: F403 - the app's settings, unchanged

ROOT_URLCONF = "tests.chips.bench_urls"
