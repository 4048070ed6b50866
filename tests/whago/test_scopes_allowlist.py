"""The tenant guard is switched off only where whago/scopes_allowlist.py says, each place with its reason.

Read from the source (ast over every .py of the apps), so a `scopes_disabled()` that no test happens to
run still counts. The scan takes a directory: the last tests feed it a copy in tmp_path.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

from whago.scopes_allowlist import ALLOWED, CROSS_TENANT, NOT_YET_CONVERTED

ROOT = Path(__file__).resolve().parents[2]
APPS = ("whago", "chips", "waha", "billing", "proxies")
# django_scopes.scopes_disabled() and ScopedManager.with_scopes_disabled(): both switch the guard off.
SWITCHES = {"scopes_disabled", "with_scopes_disabled"}


def guard_switches(root: Path) -> dict[str, int]:
    """{"module:function": how many calls} of every call switching the guard off under root's apps."""
    found: dict[str, int] = {}
    for app in APPS:
        for path in sorted((root / app).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            _walk(ast.parse(path.read_text(), filename=str(path)), module, [], found)
    return found


def _walk(node: ast.AST, module: str, where: list[str], found: dict[str, int]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            _walk(child, module, [*where, child.name], found)
            continue
        if isinstance(child, ast.Call):
            func = child.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in SWITCHES:
                key = f"{module}:{'.'.join(where) or '<module>'}"
                found[key] = found.get(key, 0) + 1
        _walk(child, module, where, found)


def problems(root: Path) -> tuple[list[str], list[str]]:
    """(calls in functions not on the list, entries whose function makes no such call any more)."""
    found = guard_switches(root)
    unlisted = sorted(key for key in found if key not in ALLOWED)
    stale = sorted(key for key in ALLOWED if key not in found)
    return unlisted, stale


def test_the_guard_is_switched_off_only_where_the_allowlist_says():
    unlisted, stale = problems(ROOT)
    assert not unlisted, (
        "scopes_disabled()/with_scopes_disabled() outside whago/scopes_allowlist.py: run the work in the "
        "tenant's scope (scope(tenant=...), TenantTask), or list the function with why it is cross-tenant:\n"
        + "\n".join(unlisted)
    )
    assert not stale, "allowlist entries whose function no longer switches the guard off:\n" + "\n".join(stale)


def test_every_entry_says_why_and_sits_in_one_section():
    for section in (CROSS_TENANT, NOT_YET_CONVERTED):
        for key, reason in section.items():
            assert reason.strip() and "\n" not in reason, key
    assert not set(CROSS_TENANT) & set(NOT_YET_CONVERTED)
    assert all(":" in key for key in ALLOWED)


def _copy_apps(tmp_path: Path) -> Path:
    for app in APPS:
        shutil.copytree(ROOT / app, tmp_path / app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tmp_path


def test_a_new_scopes_disabled_outside_the_list_fails(tmp_path):
    before = problems(ROOT)
    root = _copy_apps(tmp_path)
    target = root / "billing" / "limits.py"
    target.write_text(target.read_text() + (
        "\n\ndef peek_every_ledger():\n"
        "    from django_scopes import scopes_disabled\n\n"
        "    with scopes_disabled():\n"
        "        return list(CreditLedger.objects.all())\n"
    ))
    (root / "proxies" / "peek.py").write_text(
        "from proxies.models import ProxyAssignment\n\n\n"
        "class Peek:\n"
        "    def all(self):\n"
        "        return ProxyAssignment.objects.with_scopes_disabled().all()\n"
    )

    unlisted, stale = problems(root)

    assert sorted(set(unlisted) - set(before[0])) == ["billing.limits:peek_every_ledger", "proxies.peek:Peek.all"]
    assert stale == before[1]


def test_an_entry_whose_function_no_longer_switches_the_guard_off_is_stale(tmp_path):
    before = problems(ROOT)
    root = _copy_apps(tmp_path)
    target = root / "whago" / "tasks.py"
    source = target.read_text()
    assert "    with scopes_disabled():  # a sweep over every tenant's entries\n" in source
    target.write_text(source.replace(
        "    with scopes_disabled():  # a sweep over every tenant's entries\n", "    if True:\n"
    ))

    unlisted, stale = problems(root)

    assert unlisted == before[0]
    assert sorted(set(stale) - set(before[1])) == ["whago.tasks:prune_audit_log"]
