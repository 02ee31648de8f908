"""The package's layout: layers that import only downwards, no cycles, absl only in the CLI, and a gauge.

The layers, lowest first (``LAYERS``): the foundation (``core``, then ``config``), ``weights``,
then ``models`` and ``data`` (which never import each other), then ``kws`` and ``engine``, then
``tasks``, then ``training`` and ``predict``, then ``export`` (LiteRT), then the command line (``cli``, and ``train`` for ``python -m``). A
module may import its own package and lower layers only.
"""

import ast
import pathlib

import tfresnet

PACKAGE = pathlib.Path(tfresnet.__file__).parent
LAYERS = {"core": 0, "config": 1, "weights": 2, "models": 3, "data": 3, "kws": 4, "engine": 4, "tasks": 5,
          "training": 6, "predict": 6, "export": 7, "cli": 8, "train": 9}
# The rules, each also implied by the ranks above.
FORBIDDEN = {"models": {"data", "engine", "tasks", "cli", "kws", "training"},
             "data": {"models", "engine", "tasks", "cli", "kws", "training"},
             "core": set(LAYERS) - {"core"}}


def imports_of(path: pathlib.Path) -> set[str]:
    """The modules ``path`` imports anywhere in it (inside functions too), as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("tfresnet", *parts))
        found[name.removesuffix(".__init__")] = path
    return found


def layer(module: str) -> str:
    return module.split(".")[1]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m in imports_of(path) if m in known and m != name and m != "tfresnet"}
            for name, path in known.items()}


def test_the_tree_is_the_layers():
    top = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.name != "__init__.py" and p.name != "__pycache__"}
    assert top == set(LAYERS), top  # nothing outside a layer
    assert all((PACKAGE / name / "__init__.py").is_file() for name in LAYERS if (PACKAGE / name).is_dir())


def test_every_module_imports_only_its_own_package_and_lower_layers():
    for module, imported in graph().items():
        if module == "tfresnet" or module.count(".") == 0:
            continue
        own = layer(module)
        for other in imported:
            theirs = layer(other)
            assert theirs not in FORBIDDEN.get(own, set()), f"{module} imports {other}"
            assert theirs == own or LAYERS[theirs] < LAYERS[own], f"{module} imports {other} (a layer above)"


def test_no_module_imports_another_in_a_circle():
    edges = graph()
    assert len(edges) >= 40 and edges["tfresnet.models.zoo"] >= {"tfresnet.weights.port", "tfresnet.models.resnet"}
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


def test_only_the_cli_knows_absl_flags_and_the_foundation_is_light():
    for module, path in modules().items():
        uses_absl = any(m == "absl" or m.startswith("absl.") for m in imports_of(path))
        assert uses_absl == (module == "tfresnet.cli" or module.startswith("tfresnet.cli.")), module
    # Everything imports the foundation, and the command line reads it before TensorFlow loads.
    for module, path in modules().items():
        if module != "tfresnet" and layer(module) in ("core", "config"):
            heavy = {m for m in imports_of(path) if m.split(".")[0] in ("tensorflow", "keras", "numpy")}
            assert not heavy, (module, heavy)


def test_the_gauge_no_function_over_80_lines_no_class_over_200_no_module_over_500():
    """The sizes issue 29 set (they were 185 / 247 / 992 in one flat folder)."""
    longest = {"function": (0, ""), "class": (0, ""), "module": (0, "")}
    for module, path in modules().items():
        text = path.read_text()
        longest["module"] = max(longest["module"], (len(text.splitlines()), module))
        for node in ast.walk(ast.parse(text)):
            kind = ("function" if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    else "class" if isinstance(node, ast.ClassDef) else None)
            if kind:
                longest[kind] = max(longest[kind], (node.end_lineno - node.lineno + 1, f"{module}.{node.name}"))
    assert longest["function"][0] <= 80 and longest["class"][0] <= 200 and longest["module"][0] <= 500, longest
