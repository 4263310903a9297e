"""The package's structure (docs/architecture.md): imports run one way between the mission
folders, no import loop between modules, no module imports another's private names, the CLI is
imported by nothing but itself, and files stay under 500 lines. Read from the source with `ast`
(lazy imports inside functions count), so a violation fails here before it shows as a loop.

`KNOWN` lists the violations left on main, each with the work that removes it (issue 17): a new
violation fails, and so does an entry whose violation is gone, so the list only shrinks."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "drivesim"

# Lowest first. A folder may import its own modules and the folders of lower ranks; folders of
# one rank do not import each other. The top-level modules (__init__, __main__) are rank 0.
LAYERS = [
    {"map"},  # lanes and map banks: numpy/shapely/torch only
    {"core"},  # state, Scenario/ScenarioBatch (hold maps), geometry, config, safe I/O
    {"dynamics"},
    {"traffic", "metrics"},  # rule-based agents; closed-loop metrics
    {"io"},  # scenario files, suites, importers (procedural suites use traffic/)
    {"sim"},  # the step, env layer, policies, expert, rollout, evaluate
    {"traffic_model", "render"},  # roll scenes out / render them; sim never imports them
    {"events"},  # generators calibrated by simulation; summaries drawn with render/
    {"envs"},  # the standard gymnasium env (suites, cameras, BEV render over sim/env.py)
    {"train"},
    {"distributed"},
    {"cli"},
]
RANK = {folder: rank for rank, layer in enumerate(LAYERS, start=1) for folder in layer}
MAX_LINES = 500

KNOWN = {
    "layer": set(),
    "loop": set(),
    "private": set(),
    # tests and tools that take library code (not the command itself) from the CLI
    "cli": set(),
    "long": set(),
}


def _ratchet(kind: str, found: set, describe: dict | None = None):
    """Fail on a violation not in KNOWN[kind], and on a KNOWN entry that no longer occurs."""
    new, fixed = found - KNOWN[kind], KNOWN[kind] - found
    lines = [f"new: {describe.get(v, v) if describe else v}" for v in sorted(new, key=str)]
    lines += [f"fixed, remove it from KNOWN[{kind!r}]: {v}" for v in sorted(fixed, key=str)]
    assert not lines, "\n".join(lines)


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = dict(_modules())


def _imports(name: str, path: pathlib.Path):
    """(imported module, imported names, line) for every drivesim import in the file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "drivesim":
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.split(".")[0] != "drivesim":
                continue
            names = [a.name for a in node.names]
            for n in names:  # `from drivesim.x import y` where y is a module imports that module
                if f"{base}.{n}" in MODULES:
                    yield f"{base}.{n}", [], node.lineno
            rest = [n for n in names if f"{base}.{n}" not in MODULES]
            if rest:  # names defined in `base` itself (not its submodules)
                yield base, rest, node.lineno


def _folder(module: str) -> str:
    """The mission folder of a module ('' for the package's top-level modules)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else ""


def _edges():
    for name, path in MODULES.items():
        for target, names, line in _imports(name, path):
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            yield name, target, names, f"{path.relative_to(PACKAGE.parent)}:{line}"


def test_every_folder_has_a_rank():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(RANK), f"folders without a layer (add them to LAYERS and docs/architecture.md): {folders - set(RANK)}"


def test_imports_run_one_way():
    bad = {}
    for src, dst, _, where in _edges():
        a, b = _folder(src), _folder(dst)
        if a and b and a != b and RANK[b] >= RANK[a]:
            bad[f"{src} -> {dst}"] = f"{where}: {src} ({a}) imports {dst} ({b}), against the layer order"
    _ratchet("layer", set(bad), bad)


def test_no_import_loop():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for src, dst, _, _ in _edges():
        if dst != src and dst in graph:
            graph[src].add(dst)
    index, low, stack, on, loops, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                loops.append(tuple(sorted(comp)))

    for v in graph:
        if v not in index:
            visit(v)
    _ratchet("loop", set(loops))


def test_no_private_names_across_modules():
    bad = {f"{src} -> {dst}": f"{where}: {src} imports {', '.join(n for n in names if n.startswith('_'))} from {dst}"
           for src, dst, names, where in _edges()
           if dst != src and any(n.startswith("_") and not n.startswith("__") for n in names)}
    _ratchet("private", set(bad), bad)


def _is_command(name: str) -> bool:
    """A name of the command line itself: its entry point, parsers, options, commands."""
    return (name in ("main", "build_parser", "cli_train") or name.startswith(("add_", "cmd_"))
            or name.endswith("_from_args"))


def test_nothing_outside_the_cli_imports_it():
    library = [f"{where}: {src} imports {dst}" for src, dst, _, where in _edges()
               if dst.startswith("drivesim.cli") and not src.startswith("drivesim.cli")]
    assert not library, "library modules importing the CLI:\n" + "\n".join(library)
    root, found = PACKAGE.parent, set()
    for folder in ("tests", "tools"):
        for path in (root / folder).rglob("*.py"):
            rel = path.relative_to(root)
            if path.name.startswith("test_cli"):
                continue  # the CLI's own tests
            for node in ast.walk(ast.parse(path.read_text())):  # driving a command or its options is fine
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("drivesim.cli"):
                    if any(not _is_command(a.name) for a in node.names):
                        found.add(str(rel))
                elif isinstance(node, ast.Import) and any(a.name.startswith("drivesim.cli") for a in node.names):
                    found.add(str(rel))
    _ratchet("cli", found)


@pytest.mark.parametrize("folder", ["drivesim", "tools"])
def test_files_stay_under_500_lines(folder):
    root = PACKAGE.parent / folder
    long = {str(p.relative_to(PACKAGE.parent)): f"{p.relative_to(PACKAGE.parent)}: {n} lines (> {MAX_LINES})"
            for p in root.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    _ratchet("long", set(long) | {k for k in KNOWN["long"] if not k.startswith(folder + "/")}, long)
