"""The default plans are seeded after migrate and after flush (billing.plans, a post_migrate receiver):
missing plans are created, an operator's edits are kept."""
from decimal import Decimal

import pytest
from django.core.management import call_command

from billing.models import Plan
from billing.plans import PLANS, seed_plans


def _defaults(code: str) -> dict:
    plan = Plan.objects.get(code=code)
    return {field: getattr(plan, field) for field in PLANS[code]}


@pytest.mark.django_db
def test_a_migrated_database_has_the_default_plans():
    assert set(Plan.objects.values_list("code", flat=True)) == set(PLANS)
    for code, values in PLANS.items():
        assert _defaults(code) == values


@pytest.mark.django_db
def test_seeding_creates_only_what_is_missing_and_keeps_an_operators_edits():
    Plan.objects.filter(code="BUSINESS").update(price_brl=Decimal("249.00"), max_chips=5, name="Negócios")
    Plan.objects.filter(code="ENTERPRISE").delete()

    assert seed_plans() == ["ENTERPRISE"]
    assert seed_plans() == []

    business = Plan.objects.get(code="BUSINESS")
    assert (business.price_brl, business.max_chips, business.name) == (Decimal("249.00"), 5, "Negócios")
    assert _defaults("ENTERPRISE") == PLANS["ENTERPRISE"]
    assert Plan.objects.filter(code__in=PLANS).count() == 3


@pytest.mark.django_db(transaction=True)
def test_migrate_with_nothing_to_apply_seeds_again_without_overwriting():
    Plan.objects.filter(code="FREE").update(messages_per_day=150)
    Plan.objects.filter(code="BUSINESS").delete()

    call_command("migrate", verbosity=0, interactive=False)

    assert Plan.objects.get(code="FREE").messages_per_day == 150
    assert _defaults("BUSINESS") == PLANS["BUSINESS"]


@pytest.mark.django_db(transaction=True)
def test_a_flushed_database_has_the_plans_again():
    """The flush between transactional tests emits post_migrate: no serialized rollback needed."""
    Plan.objects.all().delete()
    call_command("flush", verbosity=0, interactive=False)
    assert set(Plan.objects.values_list("code", flat=True)) == set(PLANS)
