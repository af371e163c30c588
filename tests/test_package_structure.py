"""The package's shape, read from the source: the project's modules import each other at module
top without cycles, every import points down the layers the README draws, every third-party
package imported at run time is declared in setup.cfg, and the CLI starts without torch or
scipy."""

import ast
import configparser
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sirst5k", "sirst5k_cli", "trainer")

# bottom layer first: a module may import only from its own layer or the ones before it
LAYERS = [
    ("sirst5k.errors", "sirst5k.files", "sirst5k.io", "sirst5k.store", "sirst5k.ops",
     "sirst5k.machine", "sirst5k.metrics", "sirst5k.plots", "sirst5k.reference",
     "sirst5k.detectors", "sirst5k.fmt"),
    ("sirst5k.synth", "sirst5k.demo", "sirst5k.inspect_store", "sirst5k.transforms"),
    ("trainer",),
    ("sirst5k.inference",),
    ("sirst5k.evaluation",),
    ("sirst5k.api", "sirst5k"),
    ("sirst5k_cli",),
]  # fmt: skip


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, top_only: bool, mods=()) -> set[str]:
    """The modules `path` imports (at module top only, or anywhere); `from pkg import name` is
    pkg.name where that is one of `mods`, else pkg."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in mods else node.module)
    return out


def project_graph(top_only: bool = True) -> dict[str, set[str]]:
    mods = modules()
    graph = {}
    for m, p in mods.items():
        graph[m] = {i for i in imports(p, top_only, mods) if i in mods and i != m}
    return graph


def layer(module: str) -> int:
    best = (-1, -1)  # (length of the longest matching prefix, its layer)
    for i, names in enumerate(LAYERS):
        for n in names:
            if module == n or module.startswith(n + "."):
                best = max(best, (len(n), i))
    assert best[1] >= 0, f"{module} is in no layer of this test: add it"
    return best[1]


def test_module_top_imports_have_no_cycle():
    graph = project_graph()
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, "import cycle: " + " -> ".join(path + [m, n])
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_every_import_points_down_the_layers():
    for m, deps in project_graph(top_only=False).items():
        for d in deps:
            assert layer(d) <= layer(m), f"{m} (layer {layer(m)}) imports {d} ({layer(d)})"


def test_nothing_imports_the_cli():
    for m, deps in project_graph(top_only=False).items():
        if not m.startswith("sirst5k_cli"):
            assert not any(d.startswith("sirst5k_cli") for d in deps), m


def test_runtime_imports_are_declared():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    declared = {
        re.split(r"[<>=!\[ ]", line.strip())[0].lower()
        for line in cfg["options"]["install_requires"].strip().splitlines()
    }
    # import name -> distribution name, where they differ
    dist = {"cv2": "opencv-python-headless", "yaml": "pyyaml", "onnx": None, "onnxruntime": None}
    stdlib = set(sys.stdlib_module_names)
    used = set()
    for path in modules().values():
        used |= {i.split(".")[0] for i in imports(path, top_only=False)}
    third_party = {u for u in used if u not in stdlib and u not in PACKAGES}
    for name in sorted(third_party):
        if name in dist and dist[name] is None:
            continue  # the optional extra `sirst5k[onnx]`, checked where it is imported
        assert dist.get(name, name).lower() in declared, f"{name} is imported but not declared"


def test_the_cli_starts_without_torch_or_scipy():
    code = "import sys, sirst5k_cli.cli; print(sorted({'torch', 'scipy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
