"""`check --deploy` fails when production's static manifest is missing or incomplete
(whago/checks.py); the repository's static files collect with the manifest storage."""
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

MANIFEST_STORAGE = {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"}


@pytest.fixture
def manifest_storage(settings, tmp_path):
    """Production's hashed names (without whitenoise's compression, for speed) in a STATIC_ROOT of its own."""
    settings.STATIC_ROOT = tmp_path / "collected"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": MANIFEST_STORAGE}
    return settings


def deploy_check():
    call_command("check", "--deploy", "--tag", "staticfiles", "--fail-level", "ERROR", verbosity=0)


def collect():
    call_command("collectstatic", "--no-input", verbosity=0)


def test_a_missing_manifest_fails_the_deploy_check(manifest_storage):
    with pytest.raises(SystemCheckError, match=r"whago\.E001.*No static files manifest"):
        deploy_check()


def test_a_complete_manifest_passes(manifest_storage):
    collect()  # every static file of the repository, the vendored chart.js with its source map too
    deploy_check()


def test_a_static_file_added_after_collectstatic_fails_the_check(manifest_storage, tmp_path):
    extra = tmp_path / "extra"
    (extra / "css").mkdir(parents=True)
    manifest_storage.STATICFILES_DIRS = [*manifest_storage.STATICFILES_DIRS, extra]
    collect()
    (extra / "css" / "late.css").write_text("body { color: #123; }")
    with pytest.raises(SystemCheckError, match=r"whago\.E002.*css/late\.css"):
        deploy_check()


def test_a_hashed_file_missing_from_static_root_fails_the_check(manifest_storage):
    collect()
    hashed = next((manifest_storage.STATIC_ROOT / "css").glob("whago.*.css"))
    hashed.unlink()
    with pytest.raises(SystemCheckError, match=rf"whago\.E003.*css/{hashed.name}"):
        deploy_check()


def test_a_broken_manifest_fails_the_check(manifest_storage):
    collect()
    (manifest_storage.STATIC_ROOT / "staticfiles.json").write_text("{not json")
    with pytest.raises(SystemCheckError, match=r"whago\.E001.*cannot be read"):
        deploy_check()


def test_without_hashed_names_there_is_nothing_to_check(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "empty"
    deploy_check()  # the test and development profiles' plain storage: no manifest needed
