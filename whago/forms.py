from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from .models import Role, User


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


class TenantSettingsForm(forms.Form):
    name = forms.CharField(label=_("Company name"), max_length=120)


class LoginForm(AuthenticationForm):
    """Log in by e-mail; the error says what matters (e-mails ignore case, passwords do not)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": _("Wrong e-mail or password. Upper and lower case matter in the password, not in the "
                           "e-mail."),
    }
