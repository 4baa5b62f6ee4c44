"""glusterpyd's layout (issue 16): services below, HTTP routes on top.

glusterpy/glusterd/routes/ holds every module that speaks HTTP; the other
modules are services (the daemon, ops, store, heal, rebalance, ...) that
never import a route module, so heal logic or a volume operation can be
used, and tested, without the REST API.  The daemon wires the routes in at
one place (`Glusterd.serve`).  These checks read the sources with ast, so a
function-level import counts as much as one at the top; imports under
`if TYPE_CHECKING:` (annotations only) do not.  An import of `a.b.c` is an
edge to `a.b.c` only: that Python runs `a.b`'s __init__ first is not
counted, as routes/__init__.py re-exports from its own modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

GLUSTERD = Path(__file__).resolve().parent.parent / "glusterpy" / "glusterd"
PACKAGE = "glusterpy.glusterd"
ROUTES = PACKAGE + ".routes"
#: the one module outside routes/ that may import it, and what it imports
WIRING = PACKAGE + ".daemon"
#: the HTTP machinery (server, client, ApiError): the daemon serves and calls
#: peers with it, the routes answer with it; no other service touches it
HTTP = PACKAGE + ".http"


def _module_name(path: Path) -> str:
    parts = path.relative_to(GLUSTERD.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(GLUSTERD.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, skipping `if TYPE_CHECKING:` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(name: str, path: Path, node, modules: dict[str, Path]) -> set[str]:
    """The glusterd modules one import statement names."""
    if isinstance(node, ast.Import):
        found = {alias.name for alias in node.names}
    else:
        if node.level:
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = package + ("." + node.module if node.module else "")
        else:
            base = node.module or ""
        found = set()
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            found.add(sub if sub in modules else base)
    out = set()
    for target in found:
        # `import a.b.c` where a.b.c is no module of ours: its nearest module
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target.startswith(PACKAGE + ".") or target == PACKAGE:
            out.add(target)
    return out


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    statements = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in _imports(tree):
            for target in _targets(name, path, node, modules):
                if target != name:
                    edges[name].add(target)
                    statements.append((name, node.lineno, target))
    return edges, statements


def _in_routes(module: str) -> bool:
    return module == ROUTES or module.startswith(ROUTES + ".")


def test_the_routes_package_exists():
    modules = _modules()
    assert ROUTES in modules
    for gone in ("api", "handlers", "rebalance_api", "console"):
        assert f"{PACKAGE}.{gone}" not in modules, f"{gone}.py belongs in routes/"


def test_services_do_not_import_routes():
    _, statements = _graph()
    outside = [(m, line, t) for m, line, t in statements
               if _in_routes(t) and not _in_routes(m)]
    assert [(m, t) for m, _, t in outside] == [(WIRING, ROUTES)], \
        f"only {WIRING} wires the routes in, once: {outside}"


def test_only_the_daemon_and_routes_speak_http():
    _, statements = _graph()
    speakers = {m for m, _, t in statements if t == HTTP and not _in_routes(m)}
    assert speakers <= {WIRING}, f"services importing glusterd/http.py: {speakers - {WIRING}}"


def test_no_import_cycles():
    edges, _ = _graph()
    cycles = []
    state: dict[str, int] = {}   # 1 on the current path, 2 done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycles.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles among glusterd modules:\n" + "\n".join(
        " -> ".join(c.removeprefix(PACKAGE + ".") for c in cycle) for cycle in cycles)


def test_the_graph_sees_function_level_imports():
    # the wiring import is inside Glusterd.serve: were function bodies
    # skipped, the checks above would pass for the wrong reason
    _, statements = _graph()
    assert any(m == WIRING and _in_routes(t) for m, _, t in statements)
