"""The operators' console and the public front page: the one place of the project allowed to import every app.

whago's core (tenancy, accounts, the admin site, signals) imports no app; the apps import it. What needs
to read several apps at once lives here: the operations dashboard (tenants, billing, chips, waha), the
tenant list's columns in the admin (plan, chips, usage, payments) and the landing page's plan cards.
Nothing outside this package imports it: Django finds it through INSTALLED_APPS (its admin module is
autodiscovered) and the root URLconf includes its urls by name.
"""
