"""The package's layout rules (DESIGN.md v2), checked on the source with `ast`: device strings only in
device.py, an import graph without cycles or upward imports, a small top level, no shadowing names."""
import ast
import importlib.metadata
import re
from pathlib import Path

import unnoise

PACKAGE = Path(unnoise.__file__).parent
DEVICE_STRING = re.compile(r"^(cpu|cuda|mps)(:\d*)?$")
# import names of well-known PyPI packages a module of ours could shadow when its folder is on sys.path
# (`imageio.py` once did); the installed distributions' import names are added to these.
PYPI_NAMES = {"imageio", "pil", "numpy", "scipy", "torch", "torchvision", "torchaudio", "yaml", "soundfile",
              "safetensors", "diffusers", "transformers", "tokenizers", "tqdm", "matplotlib", "sklearn", "skimage",
              "cv2", "h5py", "pandas", "librosa", "einops", "accelerate", "tensorboard", "wandb", "datasets",
              "requests", "click", "typer", "rich", "pydantic", "toml", "tomli", "jax", "flax", "lightning"}


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module under src/unnoise; a package's __init__.py is named as the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are module, class or function docstrings."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def device_strings(path: Path) -> list[str]:
    """'line: literal' for every string literal (docstrings aside) that names a device."""
    tree = ast.parse(path.read_text(), str(path))
    skip = docstring_nodes(tree)
    return [f"{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
            and DEVICE_STRING.match(node.value.strip())]


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of ours that module `name` imports anywhere in its body (top level or inside functions):
    the deepest existing module each import statement names, relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            # `from base import a`: the submodule base.a if there is one, else a name from base itself
            targets.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                           for alias in node.names)
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None (iterative depth-first search)."""
    state = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_no_device_strings_outside_the_device_module():
    offenders = {name: hits for name, path in modules().items() if name != "unnoise.device"
                 for hits in [device_strings(path)] if hits}
    assert not offenders, f"device strings outside unnoise/device.py (use unnoise.device): {offenders}"


def test_device_string_scan_sees_literals_but_not_docstrings(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""Runs on "cpu" or cuda."""\n# "cuda" in a comment\ndef f(d="cuda:1"):\n'
                      '    """On cpu."""\n    return torch.autocast("cpu"), f"cuda:{d}", "cpu only"\n')
    assert device_strings(sample) == ["3: 'cuda:1'", "5: 'cpu'", "5: 'cuda:'"]


def test_import_graph_has_no_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_reports_the_path():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_relative_imports_resolve_to_our_modules(tmp_path):
    known = {"unnoise.train": Path("__init__.py"), "unnoise.train.loop": Path("loop.py"),
             "unnoise.train.ema": Path("ema.py"), "unnoise.run": Path("__init__.py"),
             "unnoise.run.build": Path("build.py"), "unnoise.errors": Path("errors.py")}
    source = tmp_path / "loop.py"
    source.write_text("from .ema import EMA\nfrom ..errors import UnnoiseError\nimport torch\n"
                      "def f():\n    from ..run import build\n    from . import ema, Trainer\n")
    assert imported_modules("unnoise.train.loop", source, known) == {
        "unnoise.train", "unnoise.train.ema", "unnoise.errors", "unnoise.run.build"}
    source.write_text("import unnoise.run.build\nfrom unnoise.run.build import SomeName\n")  # not a real import
    assert imported_modules("unnoise.train.loop", source, known) == {"unnoise.run.build"}


def test_layers_import_only_downward():
    graph = import_graph()
    rules = [("unnoise.train", ("unnoise.run.build", "unnoise.restore", "unnoise.pipeline")),
             ("unnoise.eval", ("unnoise.train",))]
    broken = [f"{name} imports {target}" for prefix, banned in rules for name, targets in sorted(graph.items())
              if name == prefix or name.startswith(prefix + ".")
              for target in sorted(targets) if any(target == b or target.startswith(b + ".") for b in banned)]
    assert not broken, "; ".join(broken)


def test_top_level_holds_at_most_twelve_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 12, f"{len(top)} top-level modules in src/unnoise: {top}"


def test_no_module_shadows_a_pypi_package():
    installed = {name.lower() for name in importlib.metadata.packages_distributions()} - {"unnoise"}
    shadowing = sorted(name for name in modules() if name.rpartition(".")[2].lower() in PYPI_NAMES | installed)
    assert not shadowing, f"modules named like PyPI packages they could shadow: {shadowing}"
