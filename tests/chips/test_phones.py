import pytest
from django.core.exceptions import ValidationError

from chips.phones import chat_id, display_phone, normalize_phone, phone_from_chat_id


@pytest.mark.parametrize(
    "raw",
    [
        "(11) 98765-4321", "11987654321", "+55 11 98765-4321", "55 11 98765 4321", "5511987654321",
        "011 98765-4321", "0 21 11 98765-4321", "11.98765.4321", " +55 (11) 9 8765-4321 ",
        # Without the ninth digit, as mobiles were written before 2016.
        "(11) 8765-4321", "+55 11 8765-4321", "551187654321",
    ],
)
def test_brazilian_mobile_formats_normalise_to_e164(raw):
    assert normalize_phone(raw) == "+5511987654321"


def test_landlines_keep_eight_digits():
    assert normalize_phone("(21) 3456-7890") == "+552134567890"


def test_international_numbers_with_plus():
    assert normalize_phone("+1 650 253 0000") == "+16502530000"


@pytest.mark.parametrize("raw", ["", "abc", "123", "(11) 9876-543", "+55 00 98765-4321", "99999999999999999"])
def test_invalid_numbers_are_explained(raw):
    with pytest.raises(ValidationError) as error:
        normalize_phone(raw)
    assert error.value.messages[0]


def test_chat_ids():
    assert chat_id("+5511987654321") == "5511987654321@c.us"
    assert phone_from_chat_id("5511987654321@c.us") == "+5511987654321"
    with pytest.raises(ValidationError):
        phone_from_chat_id("120363020000000000@g.us")
    assert display_phone("+5511987654321") == "+55 11 98765-4321"
