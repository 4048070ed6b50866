"""The one way the portal renders forms (settings.FORM_RENDERER): `{{ form }}` and
`{{ form.field.as_field_group }}` use templates/forms/.

Errors that belong to no field (or to a hidden one) come first, in one alert box; each field's
errors sit right under its own input, inside the field's block, and the input points to them
(aria-describedby, aria-invalid). Widgets keep Django's own templates.
"""
from django.forms.renderers import TemplatesSetting


class PortalFormRenderer(TemplatesSetting):
    form_template_name = "forms/form.html"
    field_template_name = "forms/field.html"
