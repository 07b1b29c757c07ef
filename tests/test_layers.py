"Layers run one way: no module of `cosmos_nb` imports, at any depth, a module that imports it back (issue 19)."
import ast
from pathlib import Path
from conftest import ROOT
from fastcore.test import test_eq as check_eq   # not test_*: pytest would collect it

PKG = ROOT/"cosmos_nb"
TOP = {"cli", "testing"}   # cli dispatches to every command by name; testing holds fixtures built from every layer

def _target(name: str, modules: set[str]) -> str|None:
    "The cosmos_nb module a dotted name ('cosmos_nb.video2world.x' or 'video2world') points at, if any."
    parts = name.split(".")
    if parts[0] == "cosmos_nb": parts = parts[1:]
    return parts[0] if parts and parts[0] in modules else None

def module_imports(path: Path, modules: set[str]) -> set[str]:
    "Every cosmos_nb module `path` imports: module level or in a function, `import`, `from . import`, `importlib.import_module('...')`."
    tree, found = ast.parse(path.read_text()), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {t for a in node.names if a.name.startswith("cosmos_nb.") and (t := _target(a.name, modules))}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and not (node.module or "").startswith("cosmos_nb"): continue
            if node.level > 1: continue
            base = node.module or ""
            if base in ("", "cosmos_nb"): found |= {a.name for a in node.names if a.name in modules}   # from . import x
            elif (t := _target(base, modules)): found.add(t)
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            if (t := _target(node.args[0].value, modules)) and node.args[0].value.startswith("cosmos_nb."): found.add(t)
        elif path.stem == "cli" and isinstance(node, ast.Constant) and isinstance(node.value, str) \
             and node.value.startswith("cosmos_nb.") and (t := _target(node.value, modules)):
            found.add(t)   # cli's COMMANDS table: 'cosmos_nb.train' imported lazily by name
    return found - {path.stem}

def import_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PKG.glob("*.py") if not p.stem.startswith("_")}
    return {m: module_imports(PKG/f"{m}.py", modules) for m in sorted(modules)}

def find_cycle(graph: dict[str, set[str]]) -> list[str]|None:
    "One cycle as a path [a, b, ..., a], or None."
    state, stack = {}, []
    def visit(m):
        state[m] = "open"; stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open": return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)): return c
        state[m] = "done"; stack.pop()
    for m in sorted(graph):
        if m not in state and (c := visit(m)): return c
    return None

def test_the_walker_sees_every_kind_of_import(tmp_path):
    src = tmp_path/"x.py"
    src.write_text("import importlib\nfrom .a import f\nimport cosmos_nb.b\nfrom cosmos_nb.c import g\nfrom . import d\n"
                   "def h():\n    from cosmos_nb.e import k\n    importlib.import_module('cosmos_nb.f')\n"
                   "import numpy\nfrom .z import q\n")

    check_eq(module_imports(src, set("abcdef")), set("abcdef"))
    check_eq(find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}), ["a", "b", "c", "a"])
    check_eq(find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}), None)

def test_cli_sees_every_command_module():
    g = import_graph()
    assert {"train", "video2world", "pretrained", "demo"} <= g["cli"]

def test_no_import_cycle_in_cosmos_nb():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle in cosmos_nb: " + " → ".join(cycle) + " (move the shared piece down to runtime/layout)"

def test_nothing_imports_the_top_modules():
    g = import_graph()
    for top in TOP:
        users = sorted(m for m, deps in g.items() if top in deps and m != "cli")
        assert not users, f"{users} import cosmos_nb.{top}, which sits at the top of the layers"
