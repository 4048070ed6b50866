"""Model fields for secrets: encrypted at rest with Fernet (settings.FIELD_ENCRYPTION_KEYS)."""
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be url-safe base64 Fernet keys.") from exc


def fernet() -> MultiFernet:
    keys = settings.FIELD_ENCRYPTION_KEYS
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty.")
    return _fernet(tuple(_normalise(k) for k in keys))


def _normalise(key: str) -> str:
    """Accept real Fernet keys; derive one from any other secret string (embedded mode)."""
    import base64
    import hashlib

    try:
        if len(base64.urlsafe_b64decode(key.encode())) == 32:
            return key
    except ValueError:
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()).decode()


def encrypt(value: str) -> str:
    return PREFIX + fernet().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    if not value.startswith(PREFIX):
        raise ValueError("Value is not encrypted.")
    try:
        return fernet().decrypt(value[len(PREFIX):].encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured("A secret could not be decrypted: FIELD_ENCRYPTION_KEYS changed?") from exc


class EncryptedTextField(models.TextField):
    """A text field stored encrypted; Python code sees the clear text, the database never does."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)
