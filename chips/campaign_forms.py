"""Forms of the contacts and campaigns pages (validation that needs the services lives there)."""
from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from whago.text import CleanTextForm

from .campaigns import OUTCOMES
from .models import Campaign, Chip, ContactList, campaign_zone

WEEKDAYS = [
    (0, _("Monday")), (1, _("Tuesday")), (2, _("Wednesday")), (3, _("Thursday")), (4, _("Friday")),
    (5, _("Saturday")), (6, _("Sunday")),
]


class ContactForm(CleanTextForm, forms.Form):
    name = forms.CharField(label=_("Name"), max_length=150, required=False)
    phone = forms.CharField(label=_("Phone number"), max_length=40,
                            help_text=_("With the area code, e.g. (11) 98765-4321."))
    consent_source = forms.CharField(
        label=_("Consent source"), max_length=200, required=False,
        help_text=_("Where the person agreed to receive messages, e.g. “website form”, “store counter”. Without "
                    "consent the contact never receives campaigns."),
    )
    consent_at = forms.DateTimeField(label=_("Consent date"), required=False,
                                     widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    fields_text = forms.CharField(
        label=_("Custom fields"), required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("One per line, as name=value (e.g. cidade=Campinas). Use them in messages as {cidade}."),
    )
    lists = forms.ModelMultipleChoiceField(label=_("Lists"), queryset=ContactList.objects.none(), required=False,
                                           widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, tenant=None, **kwargs):
        super().__init__(*args, **kwargs)
        if tenant is not None:
            self.fields["lists"].queryset = ContactList.objects.filter(tenant=tenant)

    def clean_fields_text(self) -> dict:
        values = {}
        for number, line in enumerate((self.cleaned_data.get("fields_text") or "").splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.strip():
                raise forms.ValidationError(_("Line %(n)s: write name=value.") % {"n": number})
            values[name.strip()] = value.strip()
        return values

    def clean_consent_at(self):
        value = self.cleaned_data.get("consent_at")
        if value is not None and timezone.is_naive(value):
            value = timezone.make_aware(value, campaign_zone())
        return value


class ContactListForm(CleanTextForm, forms.Form):
    name = forms.CharField(label=_("Name"), max_length=120)
    description = forms.CharField(label=_("Description"), max_length=300, required=False)


class ImportForm(CleanTextForm, forms.Form):
    file = forms.FileField(
        label=_("CSV or Excel (.xlsx) file"),
        help_text=_("First row with the column names: nome, telefone, origem_do_consentimento, "
                    "data_do_consentimento (DD/MM/YYYY); any other column becomes a custom field."),
    )
    contact_list = forms.ModelChoiceField(label=_("Add to the list"), queryset=ContactList.objects.none(),
                                          required=False, empty_label=_("— a new list —"))
    new_list = forms.CharField(label=_("Name of the new list"), max_length=120, required=False,
                               help_text=_("Empty: a new list named after the file and today's date."))

    def __init__(self, *args, tenant=None, **kwargs):
        super().__init__(*args, **kwargs)
        if tenant is not None:
            self.fields["contact_list"].queryset = ContactList.objects.filter(tenant=tenant)


class OptOutForm(CleanTextForm, forms.Form):
    words = forms.CharField(label=_("Opt-out words"), max_length=500,
                            help_text=_("Separated by commas. Compared with the whole message, ignoring upper/lower "
                                        "case and accents."))
    reply = forms.CharField(label=_("Confirmation sent to the contact"), required=False, max_length=1000,
                            widget=forms.Textarea(attrs={"rows": 2}),
                            help_text=_("Empty: a standard confirmation in Portuguese."))


class ContactFilterForm(CleanTextForm, forms.Form):
    q = forms.CharField(label=_("Name or number"), required=False, max_length=80)
    contact_list = forms.ModelChoiceField(label=_("List"), queryset=ContactList.objects.none(), required=False,
                                          empty_label=_("All lists"))
    state = forms.ChoiceField(label=_("Situation"), required=False, choices=[
        ("", _("All")), ("ok", _("Can receive campaigns")), ("no_consent", _("Without consent")),
        ("opted_out", _("Opted out")),
    ])

    def __init__(self, *args, tenant=None, **kwargs):
        super().__init__(*args, **kwargs)
        if tenant is not None:
            self.fields["contact_list"].queryset = ContactList.objects.filter(tenant=tenant)


class CampaignForm(CleanTextForm, forms.Form):
    name = forms.CharField(label=_("Name"), max_length=120)
    template = forms.CharField(
        label=_("Message"), max_length=4096, widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("Variables between braces are replaced for each contact: {nome}, {primeiro_nome}, {telefone} "
                    "and the custom fields of your contacts. After a |, the text used for contacts without the "
                    "field: {cidade|nossa loja}. Write {{ and }} for literal braces."),
    )
    media = forms.FileField(label=_("Image or document (optional)"), required=False)
    remove_media = forms.BooleanField(label=_("Remove the attached file"), required=False)
    lists = forms.ModelMultipleChoiceField(label=_("Contact lists"), queryset=ContactList.objects.none(),
                                           widget=forms.CheckboxSelectMultiple)
    chips = forms.ModelMultipleChoiceField(
        label=_("Chips to send from"), queryset=Chip.objects.none(), widget=forms.CheckboxSelectMultiple,
        help_text=_("Messages are shared among the chips that are connected; a chip that disconnects is skipped."),
    )
    start_at = forms.DateTimeField(
        label=_("Start at"), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text=_("Brasília time. Empty: when you press Start."),
    )
    window_days = forms.TypedMultipleChoiceField(label=_("Days of the week"), choices=WEEKDAYS, coerce=int,
                                                 widget=forms.CheckboxSelectMultiple)
    window_start = forms.TimeField(label=_("Send from"), widget=forms.TimeInput(attrs={"type": "time"}),
                                   help_text=_("Brasília time."))
    window_end = forms.TimeField(label=_("Send until"), widget=forms.TimeInput(attrs={"type": "time"}))
    pace_per_minute = forms.IntegerField(label=_("Messages per minute per chip"), min_value=0)

    def __init__(self, *args, tenant=None, pace_limit: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        if tenant is not None:
            self.fields["lists"].queryset = ContactList.objects.filter(tenant=tenant)
            self.fields["chips"].queryset = Chip.objects.filter(tenant=tenant)
        self.fields["chips"].label_from_instance = lambda chip: (
            f"{chip.alias} ({chip.get_status_display()})"
        )
        if pace_limit:
            # The bound itself is checked by campaigns.save_campaign (it also guards the API).
            self.fields["pace_per_minute"].widget.attrs.update(min=1, max=pace_limit)
            self.fields["pace_per_minute"].help_text = _("At most %(max)s on your plan.") % {"max": pace_limit}
        else:
            self.fields["pace_per_minute"].help_text = _("0 = as fast as possible.")

    def clean_start_at(self):
        value = self.cleaned_data.get("start_at")
        if value is not None and timezone.is_naive(value):
            value = timezone.make_aware(value, campaign_zone())
        return value

    def clean(self):
        data = super().clean()
        start, end = data.get("window_start"), data.get("window_end")
        if start and end and start >= end:
            self.add_error("window_end", _("The send window must end after it starts (on the same day)."))
        return data

    @staticmethod
    def initial_for(campaign: Campaign | None) -> dict:
        if campaign is None:
            return {"window_days": [0, 1, 2, 3, 4, 5], "window_start": "08:00", "window_end": "20:00",
                    "pace_per_minute": 20}
        return {
            "name": campaign.name, "template": campaign.template, "lists": list(campaign.lists.all()),
            "chips": list(campaign.chips.all()),
            "start_at": timezone.localtime(campaign.start_at, campaign_zone()).strftime("%Y-%m-%dT%H:%M")
            if campaign.start_at else None,
            "window_days": campaign.window_days, "window_start": campaign.window_start,
            "window_end": campaign.window_end, "pace_per_minute": campaign.pace_per_minute,
        }


class RecipientFilterForm(CleanTextForm, forms.Form):
    outcome = forms.ChoiceField(label=_("Situation"), required=False, choices=[
        ("", _("All")), *[(o, o) for o in OUTCOMES], ("replied", _("Replied")), ("opted_out", _("Opted out")),
    ])
    q = forms.CharField(label=_("Name or number"), required=False, max_length=80)

    LABELS = {
        "pending": _("Pending"), "sent": _("Sent"), "delivered": _("Delivered"), "read": _("Read"),
        "failed": _("Failed"), "skipped": _("Skipped"),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["outcome"].choices = [
            ("", _("All")), *[(o, self.LABELS[o]) for o in OUTCOMES], ("replied", _("Replied")),
            ("opted_out", _("Opted out")),
        ]

