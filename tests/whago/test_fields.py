import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from whago import fields


def test_encrypt_round_trip_and_never_clear():
    token = fields.encrypt("s3cret-proxy-pass")
    assert "s3cret" not in token and token.startswith(fields.PREFIX)
    assert fields.decrypt(token) == "s3cret-proxy-pass"


def test_key_rotation_old_values_still_decrypt(settings):
    old = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    token = fields.encrypt("value")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old]
    assert fields.decrypt(token) == "value"


def test_a_wrong_key_is_a_clear_error(settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    token = fields.encrypt("value")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ImproperlyConfigured):
        fields.decrypt(token)
