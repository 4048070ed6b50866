"""Give an operator the authenticator (TOTP) the admin asks for when ADMIN_REQUIRE_2FA is on.

    manage.py operator_totp operador@empresa.com.br            # prints the otpauth:// URI and a QR code
    manage.py operator_totp operador@empresa.com.br --replace  # a lost phone: the old codes stop working
"""
import io

import qrcode
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from whago.models import User


class Command(BaseCommand):
    help = "Create an operator's authenticator-app device (TOTP) and print its otpauth:// URI and QR code."

    def add_arguments(self, parser):
        parser.add_argument("email", help="the operator's e-mail (a staff user)")
        parser.add_argument("--replace", action="store_true",
                            help="remove the operator's existing authenticator first (a lost or new phone)")
        parser.add_argument("--no-qr", action="store_true", help="print the URI only, no QR code")

    def handle(self, *args, email: str, replace: bool, no_qr: bool, **options):
        user = User.objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No user with the e-mail {email}.")
        if not user.is_staff:
            raise CommandError(f"{user.email} is not an operator (staff): the admin does not let them in anyway.")
        with transaction.atomic():
            existing = TOTPDevice.objects.devices_for_user(user).select_for_update()
            if existing.exists() and not replace:
                raise CommandError(
                    f"{user.email} already has an authenticator. Run again with --replace to make a new one "
                    "(the old app's codes stop working)."
                )
            existing.delete()
            device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        uri = device.config_url
        self.stdout.write(f"Authenticator for {user.email} created. Add it to the app (Google Authenticator, "
                          "Aegis, 1Password, ...) by scanning the QR code or entering this URI:\n")
        self.stdout.write(uri + "\n")
        if not no_qr:
            qr = qrcode.QRCode(border=2)
            qr.add_data(uri)
            text = io.StringIO()
            qr.print_ascii(out=text, invert=True)
            self.stdout.write(text.getvalue())
        self.stdout.write("The admin login then asks for the 6-digit code the app shows. Keep this output private: "
                          "anyone with the URI can make the codes.")
