# The WHAGO application image: web (gunicorn), Celery worker and beat.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WHAGO_VAR_DIR=/app/var

RUN apt-get update \
    && apt-get install -y --no-install-recommends gettext libzbar0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN python manage.py compilemessages --ignore=.venv -v0 \
    && DJANGO_ENV=build python manage.py collectstatic --no-input -v0 \
    && useradd --system --home /app whago && chown -R whago /app/var

USER whago
EXPOSE 8000
CMD ["gunicorn", "whago.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
