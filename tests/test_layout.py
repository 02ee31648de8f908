"""The package's layout: no module imports another in a circle; absl flags live only in the CLI."""

import ast
import pathlib

import tfresnet

PACKAGE = pathlib.Path(tfresnet.__file__).parent


def imports_of(path: pathlib.Path) -> set[str]:
    """The tfresnet modules ``path`` imports anywhere in it (inside functions too), and other top-level packages."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "tfresnet":
                found |= {f"tfresnet.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def graph() -> dict[str, set[str]]:
    modules = {f"tfresnet.{p.stem}": p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_no_module_imports_another_in_a_circle():
    edges = graph()
    assert len(edges) >= 20 and edges["tfresnet.models"] >= {"tfresnet.port", "tfresnet.resnet"}
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join(path + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_only_the_cli_knows_absl_flags_and_the_registry_is_light():
    for path in PACKAGE.glob("*.py"):
        uses_absl = any(m == "absl" or m.startswith("absl.") for m in imports_of(path))
        assert uses_absl == (path.stem == "cli"), path.name
    # Every model module and table depends on the registry, so it imports nothing heavy.
    assert not {m for m in imports_of(PACKAGE / "registry.py") if m.split(".")[0] in ("tensorflow", "keras", "tfresnet")}
