"""System checks of a deployment, run by `python manage.py check --deploy`.

With hashed static names (production's CompressedManifestStaticFilesStorage) every page that
names a static file looks it up in collectstatic's manifest: a file missing from it makes the
page answer 500. So `check --deploy` fails when the manifest is missing, lacks a static file,
or names a hashed file that is not on disk.
"""
from __future__ import annotations

from django.apps import apps
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.checks import Error, Tags, register

SHOWN = 5  # names listed in a message


def _static_sources() -> set[str]:
    """Every static file the finders know (what collectstatic collects), as manifest keys."""
    ignore = apps.get_app_config("staticfiles").ignore_patterns
    found = set()
    for finder in finders.get_finders():
        for path, _storage in finder.list(ignore):
            found.add(path.replace("\\", "/"))
    return found


def _listing(names) -> str:
    names = sorted(names)
    more = f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


@register(Tags.staticfiles, deploy=True)
def static_manifest(app_configs=None, **kwargs) -> list[Error]:
    """The static manifest exists, covers every static file, and its hashed files are on disk."""
    storage = staticfiles_storage
    if not isinstance(storage, ManifestFilesMixin):
        return []
    hint = "Run `python manage.py collectstatic --no-input` with the production settings (the image does)."
    if storage.read_manifest() is None:
        return [Error(f"No static files manifest ({storage.manifest_name} in STATIC_ROOT {storage.location}): "
                      "every page naming a static file answers 500.", hint=hint, id="whago.E001")]
    try:
        manifest, _hash = storage.load_manifest()
    except ValueError as exc:  # not JSON, or a version Django does not read
        return [Error(f"The static files manifest cannot be read: {exc}.", hint=hint, id="whago.E001")]
    errors = []
    missing = _static_sources() - set(manifest)
    if missing:
        errors.append(Error(f"{len(missing)} static file(s) missing from the manifest: {_listing(missing)}.",
                            hint=hint, id="whago.E002"))
    absent = {hashed for hashed in set(manifest.values()) if not storage.exists(hashed)}
    if absent:
        errors.append(Error(f"{len(absent)} hashed static file(s) named by the manifest are not in STATIC_ROOT: "
                            f"{_listing(absent)}.", hint=hint, id="whago.E003"))
    return errors
