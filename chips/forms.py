from django import forms
from django.utils.translation import gettext_lazy as _

from . import outgoing


class WebhookForm(forms.Form):
    url = forms.URLField(label=_("URL that receives the events"), max_length=500, assume_scheme="https")
    is_active = forms.BooleanField(label=_("Active"), required=False, initial=True)

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        outgoing.validate_target(url)
        return url
