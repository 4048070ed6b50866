"""Create the demo operator and demo tenant of the embedded mode, and print how to log in."""
import json
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from whago import services
from whago.models import User

OPERATOR_EMAIL = "operador@whago.local"
TENANT_EMAIL = "demo@whago.local"


class Command(BaseCommand):
    help = "Create (once) the demo operator and demo tenant and print their credentials."

    def handle(self, *args, **options):
        path = settings.VAR_DIR / "demo_credentials.json"
        creds = json.loads(path.read_text()) if path.exists() else {}
        with transaction.atomic():
            if not User.objects.filter(email=OPERATOR_EMAIL).exists():
                creds["operator"] = secrets.token_urlsafe(12)
                User.objects.create_superuser(email=OPERATOR_EMAIL, password=creds["operator"], full_name="Operador")
            if not User.objects.filter(email=TENANT_EMAIL).exists():
                creds["tenant"] = secrets.token_urlsafe(12)
                services.sign_up(
                    email=TENANT_EMAIL, password=creds["tenant"], full_name="Cliente Demo", company="Empresa Demo"
                )
        path.write_text(json.dumps(creds))
        path.chmod(0o600)
        base = settings.SITE_URL
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "WHAGO is running on " + base + "/",
                    f"  Operators' console: {base}/admin/   {OPERATOR_EMAIL} / {creds.get('operator', '?')}",
                    f"  Demo tenant portal: {base}/login/   {TENANT_EMAIL} / {creds.get('tenant', '?')}",
                    f"  Worker round trip:  {base}/status/  (as the operator)",
                    *([f"  ADMIN_REQUIRE_2FA is on: give the operator an authenticator with "
                       f"`manage.py operator_totp {OPERATOR_EMAIL}`"] if settings.ADMIN_REQUIRE_2FA else []),
                    "",
                ]
            )
        )
