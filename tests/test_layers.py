"""The layering of sendgate's modules, read from their source (ast): what may import what.

Data flows request -> normalize -> gather facts -> admit -> evaluate -> enforce -> record, and a
lower layer never imports an upper one. Every import counts: at module level, inside functions,
and under `TYPE_CHECKING` (a type-only import still ties the two modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

# Lowest first. A module may import its own group and the groups of lower layers, nothing else.
# The groups of one layer are independent of each other (the state layer never imports policy).
LAYERS: list[dict[str, tuple[str, ...]]] = [
    # The ground floor: plain values and their parsers. Config and its option types; ids; the
    # numbering plan's places; card numbers and IBANs found and masked; a send body into a message.
    {"ground": ("sendgate.config", "sendgate.options", "sendgate.ids", "sendgate.places", "sendgate.sensitive",
                "sendgate.messages")},
    # Facts and their store, and the policy engines: each knows only the ground floor.
    {"state": ("sendgate.state",), "policy": ("sendgate.policy",)},
    # Over the store: the policy input from it, masking of its records, retention.
    {"facts": ("sendgate.facts", "sendgate.masking", "sendgate.retention")},
    # The request path: admit, evaluate, enforce, record, forward.
    {"gateway": ("sendgate.gateway",)},
    # Observes the gateway through its hooks.
    {"monitoring": ("sendgate.monitoring",)},
    # Meta's webhooks and the review side.
    {"webhooks": ("sendgate.webhooks",), "admin": ("sendgate.admin",)},
    # Wiring, serving (one process or workers) and the command line, policy's included.
    {"entry": ("sendgate.app", "sendgate.cli", "sendgate.serve", "sendgate.policy.cli")},
    # The fake Graph API stands apart: a test and bench tool that imports nothing of ours.
    {"tools": ("sendgate.fakegraph",)},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(module: str) -> set[str]:
    """The sendgate modules `module` imports, anywhere in it."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # `from sendgate.webhooks import options` imports the submodule itself
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imports(module) for module in MODULES}


def _place(module: str) -> tuple[int, str]:
    """The layer and group of `module`: the longest prefix that names it."""
    best: tuple[int, int, str] | None = None
    for level, groups in enumerate(LAYERS):
        for group, prefixes in groups.items():
            for prefix in prefixes:
                if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), level, group)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best[1], best[2]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _place(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_its_own_group_and_lower_layers(module: str) -> None:
    level, group = _place(module)
    upward = []
    for imported in sorted(GRAPH[module]):
        their_level, their_group = _place(imported)
        if their_group != group and their_level >= level:
            upward.append(f"{imported} ({their_group}, layer {their_level})")
    assert not upward, f"{module} ({group}, layer {level}) imports {upward}"


def test_config_imports_nothing_of_ours_but_its_option_types() -> None:
    assert GRAPH["sendgate.config"] <= {"sendgate.options"}
    assert GRAPH["sendgate.options"] == set()


def test_state_policy_and_config_never_import_the_gateway() -> None:
    lower = [m for m in MODULES if _place(m)[1] in ("ground", "state", "policy")]
    assert "sendgate.state.sqlite" in lower and "sendgate.policy.watch" in lower
    offenders = {m: sorted(i for i in GRAPH[m] if i.startswith("sendgate.gateway")) for m in lower}
    assert not {m: i for m, i in offenders.items() if i}


def _cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles_not_even_type_only() -> None:
    assert _cycles() == []


def test_no_class_subclasses_one_from_another_group() -> None:
    """Behaviour is added to a lower layer's object through its hooks, not by subclassing it
    (exceptions excepted: an error type may specialise another's; and a Protocol may compose a
    lower layer's role protocols into the slice its module depends on: interfaces, no behaviour)."""
    subclassed = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        names: dict[str, str] = {}  # local name -> the sendgate module it came from
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in MODULES:
                names.update({alias.asname or alias.name: node.module for alias in node.names})
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            if any(isinstance(base, ast.Name) and base.id == "Protocol" for base in node.bases):
                continue
            for base in node.bases:
                if not isinstance(base, ast.Name) or base.id not in names or base.id.endswith(("Error", "Exception")):
                    continue
                origin = names[base.id]
                if _place(origin)[1] != _place(module)[1]:
                    subclassed.append(f"{module}.{node.name}({origin}.{base.id})")
    assert subclassed == []
