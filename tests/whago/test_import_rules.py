"""The one allowed direction of imports (docs/architecture.md, "Direction of dependencies").

The graph is read from the source (ast over every .py of the apps, imports at the top AND inside
functions, relative ones resolved), not from what happens to be imported at run time, so an import
hidden in a function to dodge a circle counts like any other. It is built from a directory given as
an argument: the tests at the end feed it small trees in tmp_path and see each rule fail.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = ("whago", "chips", "waha", "billing", "proxies")
# The one place allowed to import every app; it is a unit of its own in the graph.
CONSOLE = "whago.console"

# What each unit may import besides itself (docs/architecture.md, "Direction of dependencies"). whago is
# the ground floor: the apps import it, it imports none of them (they react to its signals). billing
# answers "may this tenant do X?" (billing.limits) and never reaches into chips; waha never imports chips
# (it turns WAHA's webhooks into signals chips subscribes to) and asks billing.limits what a tenant's
# plan gives its containers; proxies are egress settings that know neither chips nor billing (nor waha);
# chips uses waha, proxies and billing. The console sits on top of everything and nothing imports it.
ALLOWED: dict[str, set[str]] = {
    "whago": set(),
    "proxies": {"whago"},
    "billing": {"whago"},
    "waha": {"whago", "billing"},
    "chips": {"whago", "waha", "proxies", "billing"},
    CONSOLE: {"whago", "chips", "waha", "billing", "proxies"},
}


@dataclass
class Graph:
    modules: dict[str, Path] = field(default_factory=dict)
    # importer -> {imported module: first line where it is imported}
    edges: dict[str, dict[str, int]] = field(default_factory=dict)
    # whago core's look-ups of another app's model by name (apps.get_model("billing.Plan")): (module, line, label)
    lookups: list[tuple[str, int, str]] = field(default_factory=list)

    def unit(self, module: str) -> str:
        if module == CONSOLE or module.startswith(CONSOLE + "."):
            return CONSOLE
        return module.split(".")[0]

    def unit_edges(self) -> dict[tuple[str, str], tuple[str, str, int]]:
        """(importing unit, imported unit) -> one example (importer, imported, line)."""
        found: dict[tuple[str, str], tuple[str, str, int]] = {}
        for importer, targets in sorted(self.edges.items()):
            for target, line in sorted(targets.items()):
                pair = (self.unit(importer), self.unit(target))
                if pair[0] != pair[1]:
                    found.setdefault(pair, (importer, target, line))
        return found


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(graph: Graph, dotted: str) -> str | None:
    """The project module a dotted name lands in (a name inside a module -> that module), or None."""
    parts = dotted.split(".")
    while parts:
        name = ".".join(parts)
        if name in graph.modules:
            return name
        parts.pop()
    return None


def imported_names(module: str, is_package: bool, node: ast.AST) -> list[str]:
    """Dotted names an import statement may bring in: 'a.b' for `import a.b`, 'p.x' and 'p' for
    `from p import x` (x a module or a name in p), relative imports made absolute."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = package[: len(package) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [f"{prefix}.{alias.name}" for alias in node.names]


def model_label(call: ast.Call) -> str | None:
    """'billing.Plan' for apps.get_model("billing.Plan") or apps.get_model("billing", "Plan")."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr == "get_model"):
        return None
    texts = [arg.value for arg in call.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    return ".".join(texts[:2]) if texts else None


def build_graph(root: Path, apps: tuple[str, ...] = APPS) -> Graph:
    """The import graph of the apps under root (each app a directory of root)."""
    graph = Graph()
    files = [path for app in apps for path in sorted((root / app).rglob("*.py"))]
    for path in files:
        graph.modules[module_name(root, path)] = path
    for path in files:
        module = module_name(root, path)
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = graph.edges.setdefault(module, {})
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in imported_names(module, path.name == "__init__.py", node):
                    target = resolve(graph, name)
                    if target is not None and target != module:
                        targets.setdefault(target, node.lineno)
            elif isinstance(node, ast.Call) and (label := model_label(node)):
                graph.lookups.append((module, node.lineno, label))
    return graph


def strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one member (the import circles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(circles)


# --- the rules: each returns what breaks it, one line each ---

def core_imports(graph: Graph) -> list[str]:
    """(a) whago's core imports no app — nor the console, which imports them all — and looks up no
    app's model by name. (whago/settings.py names apps in strings: INSTALLED_APPS, beat tasks; not imports.)"""
    found = [f"{importer}:{line} imports {target}"
             for (source, dest), (importer, target, line) in graph.unit_edges().items()
             if source == "whago" and dest != "whago"]
    found += [f"{module}:{line} looks up {label}" for module, line, label in graph.lookups
              if graph.unit(module) == "whago" and label.split(".")[0] in set(APPS) - {"whago"}]
    return sorted(found)


def wrong_direction(graph: Graph) -> list[str]:
    """(b) every import between units is one ALLOWED lists."""
    return sorted(f"{source} must not import {dest}: {importer}:{line} imports {target}"
                  for (source, dest), (importer, target, line) in graph.unit_edges().items()
                  if dest not in ALLOWED.get(source, set()))


def app_circles(graph: Graph) -> list[list[str]]:
    """(c) circles between units."""
    edges: dict[str, set[str]] = {}
    for source, dest in graph.unit_edges():
        edges.setdefault(source, set()).add(dest)
    return strongly_connected(sorted({graph.unit(m) for m in graph.modules}), edges)


def module_circles(graph: Graph) -> list[list[str]]:
    """(d) circles between the modules of one unit."""
    edges = {importer: {t for t in targets if graph.unit(t) == graph.unit(importer)}
             for importer, targets in graph.edges.items()}
    return strongly_connected(list(graph.modules), edges)


def describe(circles: list[list[str]]) -> str:
    return "\n".join(" <-> ".join(circle) for circle in circles)


@pytest.fixture(scope="module")
def project() -> Graph:
    return build_graph(ROOT)


def test_the_graph_sees_every_kind_of_import(project):
    """The project's own graph is read in full: relative, absolute and in-function imports all land."""
    assert len(project.modules) > 100
    assert "whago.models" in project.edges["whago.services"]  # from .models import ...
    assert "whago.signals" in project.edges["billing.receivers"]  # from whago.signals import ...
    assert "whago.console.dashboard" in project.edges["whago.console.urls"]  # from . import dashboard
    assert {"chips", "waha", "billing", "whago"} <= {project.unit(t) for t in project.edges["whago.console.dashboard"]}


def test_whago_core_imports_no_app(project):
    assert core_imports(project) == []


def test_every_import_between_apps_goes_the_allowed_way(project):
    assert wrong_direction(project) == []


def test_no_circle_between_apps(project):
    assert app_circles(project) == [], describe(app_circles(project))


@pytest.mark.parametrize("app", [*APPS, CONSOLE])
def test_no_circle_between_the_modules_of_an_app(project, app):
    circles = [circle for circle in module_circles(project) if project.unit(circle[0]) == app]
    assert circles == [], f"import circles in {app}:\n{describe(circles)}"


# --- the rules fail on trees made to break them ---

def write(root: Path, files: dict[str, str]) -> Path:
    for app in APPS:
        (root / app).mkdir(parents=True, exist_ok=True)
        (root / app / "__init__.py").touch()
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_circle_inside_an_app_is_found_and_named(tmp_path):
    # Three modules in a circle, one of the imports inside a function (as a dodge would be),
    # one relative with a parent package (`from ..`), plus a module outside the circle.
    root = write(tmp_path, {
        "chips/models.py": "from chips import services\n",
        "chips/services.py": "def go():\n    from .sub.tasks import run\n    return run\n",
        "chips/sub/__init__.py": "",
        "chips/sub/tasks.py": "from .. import models\n",
        "chips/views.py": "import chips.models\n",
    })
    graph = build_graph(root)
    assert module_circles(graph) == [["chips.models", "chips.services", "chips.sub.tasks"]]
    assert describe(module_circles(graph)) == "chips.models <-> chips.services <-> chips.sub.tasks"
    # Broken anywhere, the circle is gone.
    (root / "chips/services.py").write_text("def go():\n    return None\n")
    assert module_circles(build_graph(root)) == []


def test_whago_core_importing_an_app_or_the_console_is_found(tmp_path):
    root = write(tmp_path, {
        "billing/services.py": "def start_free_plan(tenant):\n    pass\n",
        "whago/services.py": "def sign_up():\n    from billing.services import start_free_plan\n",
        "whago/admin.py": "from django.apps import apps\nPlan = apps.get_model('billing', 'Plan')\n",
        "whago/urls.py": "from .console import views\n",
        "whago/console/__init__.py": "",
        "whago/console/views.py": "import billing.services\nfrom chips import models\n",
        "chips/models.py": "",
        "whago/settings.py": "INSTALLED_APPS = ['billing', 'chips', 'whago.console']\n",
    })
    graph = build_graph(root)
    assert core_imports(graph) == [
        "whago.admin:2 looks up billing.Plan",
        "whago.services:2 imports billing.services",
        "whago.urls:1 imports whago.console.views",
    ]
    # The console itself may import every app; nothing may import it.
    assert wrong_direction(graph) == [
        "whago must not import billing: whago.services:2 imports billing.services",
        "whago must not import whago.console: whago.urls:1 imports whago.console.views",
    ]


def test_a_wrong_direction_and_a_circle_between_apps_are_found(tmp_path):
    root = write(tmp_path, {
        "chips/models.py": "from waha.models import WahaSession\n",
        "waha/models.py": "class WahaSession:\n    pass\n",
        "waha/receivers.py": "from chips.models import Chip\n",
        "proxies/models.py": "import billing.models\n",
        "billing/models.py": "",
    })
    graph = build_graph(root)
    assert wrong_direction(graph) == [
        "proxies must not import billing: proxies.models:1 imports billing.models",
        "waha must not import chips: waha.receivers:1 imports chips.models",
    ]
    assert app_circles(graph) == [["chips", "waha"]]
    assert module_circles(graph) == []  # waha.receivers -> chips.models -> waha.models: no circle of modules
