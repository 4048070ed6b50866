"""Billing forms: what the Cobrança page posts."""
from django import forms
from django.utils.translation import gettext_lazy as _

from . import gateways
from .models import Plan
from .services import credit_packs


class CheckoutForm(forms.Form):
    """Pay for a plan or for a credit pack, with one of the configured gateways."""

    plan = forms.ModelChoiceField(
        queryset=Plan.objects.filter(is_public=True, price_brl__gt=0), to_field_name="code", required=False
    )
    credits = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    gateway = forms.ChoiceField(label=_("Pay with"))
    method = forms.ChoiceField(choices=[("", _("Card / checkout")), ("pix", "PIX")], required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["credits"].choices = [("", "")] + [(p.credits, p.credits) for p in credit_packs()]
        self.fields["gateway"].choices = [(g.code, g.label) for g in gateways.configured_gateways()]

    def clean(self):
        data = super().clean()
        if bool(data.get("plan")) == bool(data.get("credits")):
            raise forms.ValidationError(_("Choose a plan or a credit pack."))
        return data
