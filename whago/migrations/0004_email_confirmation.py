from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("whago", "0003_tenant_suspension_auditlog"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="email_confirmed_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="e-mail confirmed at"),
        ),
    ]
