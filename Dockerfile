# The WHAGO application image: web (gunicorn), Celery worker and beat.
#
# BASE_IMAGE: a Debian bookworm image with Python 3.11 (the official one by default; the
# tests build on a Debian base made locally, tests/deploy/images.py). pip takes its index
# from the builder: --build-arg PIP_INDEX_URL=… (or PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST,
# PIP_FIND_LINKS, PIP_NO_INDEX); none given, PyPI. See docs/deploy.md.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WHAGO_VAR_DIR=/app/var VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH

# gettext compiles the translations, libzbar0 reads QR codes (a base that has them already
# needs no Debian mirror); the application's packages live in a virtual environment.
RUN if ! dpkg -s gettext libzbar0 >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends gettext libzbar0 \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv

WORKDIR /app
COPY requirements.txt .
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# Static files with hashed names and their manifest, as production serves them (whitenoise);
# the build fails when the manifest does not cover every static file (whago/checks.py).
RUN python manage.py compilemessages --ignore=.venv -v0 \
    && DJANGO_ENV=build python manage.py collectstatic --no-input -v0 \
    && DJANGO_ENV=build python manage.py check --deploy --tag staticfiles --fail-level ERROR \
    && useradd --system --create-home --home-dir /home/whago whago \
    && mkdir -p var/media && chown -R whago /app/var

USER whago
EXPOSE 8000
CMD ["gunicorn", "whago.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
