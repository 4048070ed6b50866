"""Portuguese for the third-party apps the operators' console shows.

django-axes and django-celery-beat ship no pt-BR catalogue, and django-otp's TOTP plugin names its model with
plain (untranslatable) strings. Our catalogue (LOCALE_PATHS) is looked up before every app's, so listing their
English texts here with gettext_noop keeps them in our .po files (makemessages) where they get their
translation; `name_apps()` gives the apps and the TOTP model translatable names, and has fields named with
plain strings (e.g. "tenant", taken by Django from the attribute) looked up in the catalogue too. Django's own
pt-BR text for the delete action ("Remover empresas selecionados") is corrected the same way.
"""
from django.apps import apps
from django.utils import formats, timezone
from django.utils.functional import Promise
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

THIRD_PARTY_TEXTS = [
    # Django admin: its pt-BR "Remover %(verbose_name_plural)s selecionados" is wrong for feminine names.
    gettext_noop("Delete selected %(verbose_name_plural)s"),
    # django-axes: models, fields, columns, filters, actions.
    gettext_noop("access attempt"), gettext_noop("access attempts"),
    gettext_noop("access attempt expiration"), gettext_noop("access attempt expirations"),
    gettext_noop("access failure"), gettext_noop("access failures"),
    gettext_noop("access log"), gettext_noop("access logs"),
    gettext_noop("Access Attempt"), gettext_noop("Access lock out"), gettext_noop("Attempt Time"),
    gettext_noop("Attempt Remaining"), gettext_noop("Expires At"), gettext_noop("Failed Logins"),
    gettext_noop("Form Data"), gettext_noop("GET Data"), gettext_noop("POST Data"), gettext_noop("HTTP Accept"),
    gettext_noop("IP Address"), gettext_noop("Locked Out"), gettext_noop("Logout Time"), gettext_noop("Meta Data"),
    gettext_noop("Not set"), gettext_noop("Path"), gettext_noop("User Agent"), gettext_noop("Username"),
    gettext_noop("Status"), gettext_noop("Session key hash (sha256)"),
    gettext_noop("Clean up expired attempts"),
    gettext_noop("The time when access attempt expires and is no longer valid."),
    # django-celery-beat: models, fields, columns, actions.
    gettext_noop("Periodic Tasks"), gettext_noop("periodic task"), gettext_noop("periodic tasks"),
    gettext_noop("periodic task track"), gettext_noop("periodic task tracks"),
    gettext_noop("interval"), gettext_noop("intervals"), gettext_noop("crontab"), gettext_noop("crontabs"),
    gettext_noop("clocked"), gettext_noop("solar event"), gettext_noop("solar events"),
    gettext_noop("Scheduler"), gettext_noop("Interval Schedule"), gettext_noop("Crontab Schedule"),
    gettext_noop("Solar Schedule"), gettext_noop("Clocked Schedule"), gettext_noop("Start Datetime"),
    gettext_noop("Last Run Datetime"), gettext_noop("One-off Task"), gettext_noop("Expires Datetime"),
    gettext_noop("Task (registered)"), gettext_noop("Task (custom)"),
    gettext_noop("Enabled"), gettext_noop("Name"), gettext_noop("Description"), gettext_noop("Schedule"),
    gettext_noop("Arguments"), gettext_noop("Positional Arguments"), gettext_noop("Keyword Arguments"),
    gettext_noop("Execution Options"), gettext_noop("Total Run Count"), gettext_noop("Last Modified"),
    gettext_noop("Clock Time"), gettext_noop("Interval"), gettext_noop("Crontab"), gettext_noop("Solar event"),
    gettext_noop("Human readable"), gettext_noop("Number of Periods"), gettext_noop("Interval Period"),
    gettext_noop("Days"), gettext_noop("Hours"), gettext_noop("Minutes"), gettext_noop("Seconds"),
    gettext_noop("Microseconds"), gettext_noop("Periodic Tasks Using This Schedule"),
    gettext_noop("Enable selected tasks"), gettext_noop("Disable selected tasks"),
    gettext_noop("Toggle activity of selected tasks"), gettext_noop("Run selected tasks"), gettext_noop("Task Name"),
    gettext_noop("every {}"), gettext_noop("every {} {}"), gettext_noop("Day"), gettext_noop("Hour"),
    gettext_noop("Minute"), gettext_noop("Second"), gettext_noop("Microsecond"),
    # django-celery-beat's forms and django-axes' messages.
    gettext_noop("Need name of task"),
    gettext_noop("Only one can be set, in expires and expire_seconds"),
    gettext_noop("Unable to parse JSON: %s"),
    gettext_noop("task \"{not_found_task_name}\" not found"),
    gettext_noop("{0} task{1} {2} successfully run"),
    gettext_noop("was,were"),
    gettext_noop("Astronomical dawn"),
    gettext_noop("Civil dawn"),
    gettext_noop("Nautical dawn"),
    gettext_noop("Astronomical dusk"),
    gettext_noop("Civil dusk"),
    gettext_noop("Nautical dusk"),
    gettext_noop("Solar noon"),
    gettext_noop("Sunrise"),
    gettext_noop("Sunset"),
    gettext_noop("Solar Event"),
    gettext_noop("The type of solar event when the job should run"),
    gettext_noop("Latitude"),
    gettext_noop("Run the task when the event happens at this latitude"),
    gettext_noop("Longitude"),
    gettext_noop("Run the task when the event happens at this longitude"),
    gettext_noop("Number of interval periods to wait before running the task again"),
    gettext_noop("The type of period between task runs (Example: days)"),
    gettext_noop("Run the task at clocked time"),
    gettext_noop("Minute(s)"),
    gettext_noop("Cron Minutes to Run. Use \"*\" for \"all\". (Example: \"0,30\")"),
    gettext_noop("Hour(s)"),
    gettext_noop("Cron Hours to Run. Use \"*\" for \"all\". (Example: \"8,20\")"),
    gettext_noop("Day(s) Of The Month"),
    gettext_noop("Cron Days Of The Month to Run. Use \"*\" for \"all\". (Example: \"1,15\")"),
    gettext_noop("Month(s) Of The Year"),
    gettext_noop("Cron Months (1-12) Of The Year to Run. Use \"*\" for \"all\". (Example: \"1,12\")"),
    gettext_noop("Day(s) Of The Week"),
    gettext_noop("Cron Days Of The Week to Run. Use \"*\" for \"all\", Sunday is 0 or 7, Monday is 1. "
                 "(Example: \"0,5\")"),
    gettext_noop("Cron Timezone"),
    gettext_noop("Timezone to Run the Cron Schedule on. Default is UTC."),
    gettext_noop("Short Description For This Task"),
    gettext_noop("The Name of the Celery Task that Should be Run.  (Example: \"proj.tasks.import_contacts\")"),
    gettext_noop("Interval Schedule to run the task on.  Set only one schedule type, leave the others null."),
    gettext_noop("Crontab Schedule to run the task on.  Set only one schedule type, leave the others null."),
    gettext_noop("Solar Schedule to run the task on.  Set only one schedule type, leave the others null."),
    gettext_noop("Clocked Schedule to run the task on.  Set only one schedule type, leave the others null."),
    gettext_noop("JSON encoded positional arguments (Example: [\"arg1\", \"arg2\"])"),
    gettext_noop("JSON encoded keyword arguments (Example: {\"argument\": \"value\"})"),
    gettext_noop("Queue Override"),
    gettext_noop("Queue defined in CELERY_TASK_QUEUES. Leave None for default queuing."),
    gettext_noop("Exchange"),
    gettext_noop("Override Exchange for low-level AMQP routing"),
    gettext_noop("Routing Key"),
    gettext_noop("Override Routing Key for low-level AMQP routing"),
    gettext_noop("AMQP Message Headers"),
    gettext_noop("JSON encoded message headers for the AMQP message."),
    gettext_noop("Priority"),
    gettext_noop("Priority Number between 0 and 255. Supported by: RabbitMQ, Redis (priority reversed, "
                 "0 is highest)."),
    gettext_noop("Datetime after which the schedule will no longer trigger the task to run"),
    gettext_noop("Expires timedelta with seconds"),
    gettext_noop("Timedelta with seconds which the schedule will no longer trigger the task to run"),
    gettext_noop("If True, the schedule will only run the task a single time"),
    gettext_noop("Datetime when the schedule should begin triggering the task to run"),
    gettext_noop("Set to False to disable the schedule"),
    gettext_noop("Datetime that the schedule last triggered the task to run. Reset to None if enabled is set "
                 "to False."),
    gettext_noop("Running count of how many times the schedule has triggered the task"),
    gettext_noop("Datetime that this PeriodicTask was last modified"),
    gettext_noop("Detailed description about the details of this Periodic Task"),
    gettext_noop("Cleaned up {count} expired access attempts."),
    gettext_noop("Account locked: too many login attempts. Please try again later."),
    gettext_noop("Account locked: too many login attempts. Contact an admin to unlock your account."),
    # Fields named by Django from their attribute (no verbose_name given): see plain_names_translated().
    gettext_noop("tenant"), gettext_noop("container"), gettext_noop("chip"), gettext_noop("plan"),
    gettext_noop("payment"), gettext_noop("created by"), gettext_noop("proxy assignment"),
    gettext_noop("reservation"), gettext_noop("sort order"), gettext_noop("waha session"), gettext_noop("user"),
    gettext_noop("token"),
]


def plain_names_translated() -> None:
    """Field names that are plain strings (given by Django from the attribute, or by an app without gettext)
    looked up in the catalogue when shown. A migration reads the name as declared (Field._verbose_name),
    so this changes no migration state."""
    for model in apps.get_models():
        for field in model._meta.get_fields():
            name = getattr(field, "verbose_name", None)
            if isinstance(name, str) and not isinstance(name, Promise):
                field.verbose_name = _(name)


def _local(moment) -> str:
    return formats.date_format(timezone.localtime(moment), "SHORT_DATETIME_FORMAT") if moment else "—"


def axes_titles_in_local_time() -> None:
    """django-axes titles its rows in English with raw UTC timestamps ("Attempted Access: 2026-12-04
    12:37:13+00:00"), which the console shows as page titles and breadcrumbs: the operator's words and clock."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    AccessAttempt.__str__ = lambda row: gettext("Attempts of %(user)s since %(when)s") % {
        "user": row.username, "when": _local(row.attempt_time)}
    AccessLog.__str__ = lambda row: gettext("Login of %(user)s at %(when)s") % {
        "user": row.username, "when": _local(row.attempt_time)}
    AccessFailureLog.__str__ = lambda row: gettext("Failed login of %(user)s at %(when)s from %(ip)s") % {
        "user": row.username, "when": _local(row.attempt_time), "ip": row.ip_address}


def name_apps() -> None:
    """Translatable names for the third-party apps and models the console lists (called once, when the
    admin is ready). Only display names change: a model's migration state reads its Meta as declared."""
    for label, name in {"axes": _("Login attempts"), "otp_totp": _("Second factor")}.items():
        if label in apps.app_configs:
            apps.get_app_config(label).verbose_name = name
    if "otp_totp" in apps.app_configs:
        device = apps.get_model("otp_totp", "TOTPDevice")
        device._meta.verbose_name = _("authenticator")
        device._meta.verbose_name_plural = _("authenticators")
    plain_names_translated()
    if "axes" in apps.app_configs:
        axes_titles_in_local_time()
