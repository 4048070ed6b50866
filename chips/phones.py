"""Phone numbers as people type them in Brazil, normalised to E.164."""
import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

MOBILE_FIRST_DIGITS = "6789"


def normalize_phone(raw: str, region: str = "BR") -> str:
    """Return +55DDXXXXXXXXX for any common Brazilian way of writing a number.

    Accepts +55 or not, the trunk prefix and carrier code (0 21 11 ...), spaces, dashes,
    dots, parentheses, and mobiles written without the ninth digit (added back).
    International numbers are accepted when written with their + prefix.
    """
    text = (raw or "").strip()
    if not text or not any(ch.isdigit() for ch in text):
        raise ValidationError(_("Enter a phone number."), code="empty")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValidationError(_("“%(raw)s” is not a phone number.") % {"raw": raw}, code="invalid")
    if not phonenumbers.is_valid_number(number) and number.country_code == 55:
        national = str(number.national_number)
        # Mobiles written before 2016 had 8 digits: the ninth digit is a leading 9.
        if len(national) == 10 and national[2] in MOBILE_FIRST_DIGITS:
            number = phonenumbers.parse(f"+55{national[:2]}9{national[2:]}")
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(
            _("“%(raw)s” is not a valid phone number. Use the area code, e.g. (11) 98765-4321.") % {"raw": raw},
            code="invalid",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def chat_id(e164: str) -> str:
    """WAHA's chat id of a person: digits of the E.164 number + @c.us."""
    return e164.lstrip("+") + "@c.us"


def phone_from_chat_id(value: str) -> str:
    """E.164 of a WAHA chat id such as 5511987654321@c.us (groups are not phones)."""
    user, _at, server = value.partition("@")
    if not user.isdigit() or server not in ("c.us", "s.whatsapp.net"):
        raise ValidationError(_("“%(raw)s” is not a person's chat.") % {"raw": value}, code="invalid")
    return "+" + user


def display_phone(e164: str) -> str:
    """A number formatted as Brazilians read it: +55 11 98765-4321."""
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return e164
