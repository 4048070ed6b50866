from django import forms
from django.utils.translation import gettext_lazy as _

from whago.text import CleanTextForm

from . import outgoing
from .models import Chip, Message


class WebhookForm(CleanTextForm, forms.Form):
    url = forms.URLField(label=_("URL that receives the events"), max_length=500, assume_scheme="https")
    is_active = forms.BooleanField(label=_("Active"), required=False, initial=True)

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        outgoing.validate_target(url)
        return url


class ChipForm(CleanTextForm, forms.Form):
    alias = forms.CharField(
        label=_("Name"), max_length=80, help_text=_("How you call this number, e.g. “Sales” or “Support”.")
    )


class PairingCodeForm(CleanTextForm, forms.Form):
    phone = forms.CharField(
        label=_("Phone number of the WhatsApp account"), max_length=40,
        help_text=_("With the area code, e.g. (11) 98765-4321."),
    )


class SendMessageForm(CleanTextForm, forms.Form):
    chip = forms.ModelChoiceField(label=_("Chip"), queryset=None, empty_label=None)
    to = forms.CharField(label=_("To (phone number)"), max_length=40,
                         help_text=_("With the area code, e.g. (11) 98765-4321 or +55 11 98765-4321."))
    kind = forms.ChoiceField(label=_("Type"), choices=Message.Kind.choices, initial=Message.Kind.TEXT)
    text = forms.CharField(label=_("Text (caption for files)"), required=False, max_length=4096,
                           widget=forms.Textarea(attrs={"rows": 3}))
    file = forms.FileField(label=_("Image or document"), required=False)

    def __init__(self, *args, chips=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["chip"].queryset = chips if chips is not None else Chip.objects.none()
        # The name and the number's last digits: the whole number would not fit a phone's screen.
        self.fields["chip"].label_from_instance = lambda chip: (
            f"{chip.alias} · …{chip.phone[-4:]}" if chip.phone else chip.alias
        )


class MessageFilterForm(CleanTextForm, forms.Form):
    chip = forms.ModelChoiceField(label=_("Chip"), queryset=None, required=False, empty_label=_("All chips"))
    status = forms.ChoiceField(label=_("Status"), required=False,
                               choices=[("", _("Any status")), *Message.Status.choices])
    direction = forms.ChoiceField(label=_("Direction"), required=False,
                                  choices=[("", _("Sent and received")), *Message.Direction.choices])
    peer = forms.CharField(label=_("Phone number"), required=False, max_length=40)
    since = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label=_("Until"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, chips=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["chip"].queryset = chips if chips is not None else Chip.objects.none()
