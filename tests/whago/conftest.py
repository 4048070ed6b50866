"""Fixtures of the whago tests shared with the chips tests."""
from tests.chips.conftest import api  # noqa: F401 - API clients with a tenant key
