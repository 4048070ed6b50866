import re

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _
from localflavor.br.forms import BRCNPJField, BRZipCodeField

from .models import Role, Tenant, User


class SignUpForm(forms.Form):
    full_name = forms.CharField(label=_("Your name"), max_length=150)
    company = forms.CharField(label=_("Company name"), max_length=120)
    email = forms.EmailField(label=_("E-mail"))
    password1 = forms.CharField(label=_("Password"), strip=False, widget=forms.PasswordInput)
    password2 = forms.CharField(label=_("Confirm the password"), strip=False, widget=forms.PasswordInput)

    def __init__(self, *args, fixed_email: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fixed_email = fixed_email
        if fixed_email:
            # Joining through an invitation: no company of one's own, e-mail fixed.
            del self.fields["company"]
            self.fields["email"].initial = fixed_email
            self.fields["email"].disabled = True

    def clean_email(self) -> str:
        email = (self.fixed_email or self.cleaned_data["email"]).strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(_("An account with this e-mail already exists. Log in instead."))
        return email

    def clean(self):
        cleaned = super().clean()
        p1, p2 = cleaned.get("password1"), cleaned.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", _("The two passwords do not match."))
        elif p1:
            candidate = User(email=cleaned.get("email", ""), full_name=cleaned.get("full_name", ""))
            try:
                password_validation.validate_password(p1, candidate)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned


class InviteForm(forms.Form):
    email = forms.EmailField(label=_("E-mail"))
    role = forms.ChoiceField(
        label=_("Role"), choices=[(Role.MEMBER, Role.MEMBER.label), (Role.ADMIN, Role.ADMIN.label)]
    )


class ApiKeyForm(forms.Form):
    name = forms.CharField(label=_("Key name"), max_length=80, help_text=_("Where it is used, e.g. “ERP”."))


def _without_punctuation(value: str) -> str:
    """What was typed, less the dots, slashes, dashes and spaces people type in CNPJs and CEPs."""
    return re.sub(r"[\s./-]", "", value or "").upper()


class CNPJField(BRCNPJField):
    """A CNPJ however it was typed (digits, or letters and digits since July 2026), stored as
    XX.XXX.XXX/XXXX-XX; the check digits are verified by django-localflavor's validator."""

    default_error_messages = {"invalid": _("Invalid CNPJ: check the 14 characters and the last two (check) digits.")}

    def __init__(self, **kwargs):
        super().__init__(min_length=None, max_length=None, **kwargs)
        self.widget.attrs.update({"maxlength": "18", "inputmode": "text", "placeholder": "00.000.000/0000-00"})

    def to_python(self, value):
        raw = _without_punctuation(super().to_python(value))
        return f"{raw[:2]}.{raw[2:5]}.{raw[5:8]}/{raw[8:12]}-{raw[12:]}" if len(raw) == 14 else raw


class CEPField(BRZipCodeField):
    """A CEP typed with or without its dash, stored as 00000-000."""

    default_error_messages = {"invalid": _("Invalid CEP: 8 digits, as in 01310-100.")}

    def __init__(self, **kwargs):
        super().__init__(min_length=None, max_length=None, **kwargs)
        self.widget.attrs.update({"maxlength": "9", "inputmode": "numeric", "placeholder": "00000-000"})

    def to_python(self, value):
        raw = _without_punctuation(super().to_python(value))
        return f"{raw[:5]}-{raw[5:]}" if len(raw) == 8 else raw


class TenantSettingsForm(forms.ModelForm):
    """The company's name, and the CNPJ and address printed on its receipts."""

    name = forms.CharField(label=_("Company name"), max_length=120)
    cnpj = CNPJField(label=_("CNPJ"), required=False, help_text=_("Printed on your receipts."))
    address_postal_code = CEPField(label=_("Postal code (CEP)"), required=False)

    class Meta:
        model = Tenant
        fields = ["name", "cnpj", "address_street", "address_district", "address_city", "address_state",
                  "address_postal_code"]


class LoginForm(AuthenticationForm):
    """Log in by e-mail; the error says what matters (e-mails ignore case, passwords do not)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": _("Wrong e-mail or password. Upper and lower case matter in the password, not in the "
                           "e-mail."),
    }
