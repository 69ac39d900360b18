"""The wheel maps the top-level applications/ folder to keras_igc.applications."""

import ast
import itertools
import pathlib
import re
import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.tensorflow_only

ROOT = pathlib.Path(__file__).parents[1]


def test_wheel_contains_the_mapped_applications_package(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("keras_igc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "keras_igc/applications/__init__.py" in names
    # Every module of the source tree, subpackages included (setup.cfg lists
    # each package: a new one left out would be missing from installs).
    for folder, installed in (("keras_igc", "keras_igc"),
                              ("applications", "keras_igc/applications")):  # fmt: skip
        for path in (ROOT / folder).rglob("*.py"):
            name = f"{installed}/{path.relative_to(ROOT / folder).as_posix()}"
            assert name in names, f"{name} is not in the wheel: list its package"
    assert not any(name.startswith(("applications/", "tests/")) for name in names)


def test_applications_is_importable_from_the_package():
    import keras_igc

    assert keras_igc.applications.__name__ == "keras_igc.applications"


def _module_imports(path, modules):
    """The keras_igc modules one source file imports, at module level or
    inside functions (which run later, but a circle through them is still a
    circle), including `importlib.import_module("keras_igc...")`.
    `from package import submodule` depends on the submodule; `from module
    import name` on the module."""
    import ast

    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "keras_igc"
        ):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                imported.add(submodule if submodule in modules else node.module)
        elif isinstance(node, ast.Import):
            names = (a.name for a in node.names)
            imported.update(n for n in names if n.startswith("keras_igc"))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).startswith("keras_igc")
        ):
            imported.add(node.args[0].value)
    return imported


def test_the_package_has_no_import_cycle():
    """No submodule imports `keras_igc` itself, and the submodules' imports,
    inside functions too, form no cycle: any of them imports first without a
    half-initialised module, and the dependencies point one way."""
    root = pathlib.Path(__file__).parents[1]
    sources = {}
    for package, folder in (("keras_igc", "keras_igc"), ("keras_igc.applications",
                                                        "applications")):  # fmt: skip
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            sources[name] = path
    imports = {name: _module_imports(path, sources) for name, path in sources.items()}
    for name, names in imports.items():
        if name != "keras_igc":
            assert "keras_igc" not in names, f"{name} imports from keras_igc itself"
    graph = {
        name: {m for m in names if m in sources and m != name}
        for name, names in imports.items()
    }
    graph.pop("keras_igc", None)  # __init__ imports lazily, inside _load()
    done, stack = set(), []

    def visit(name):
        if name in stack:
            raise AssertionError(" -> ".join(stack[stack.index(name) :] + [name]))
        if name in done:
            return
        stack.append(name)
        for imported in graph.get(name, ()):
            visit(imported)
        stack.pop()
        done.add(name)

    for name in graph:
        visit(name)


def test_importing_keras_igc_leaves_matplotlib_alone():
    """A user's matplotlib backend survives `import keras_igc` and the modules
    that draw (they use `matplotlib.figure.Figure`, never `matplotlib.use`)."""
    code = (
        "import matplotlib; matplotlib.use('svg'); "
        "import keras_igc, keras_igc.training, keras_igc.tuning, keras_igc.msgc; "
        "print(matplotlib.get_backend())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["svg"]
    root = pathlib.Path(__file__).parents[1]
    for path in [*root.joinpath("keras_igc").rglob("*.py"),
                 *root.joinpath("applications").rglob("*.py")]:  # fmt: skip
        assert "matplotlib.use(" not in path.read_text(), path
        assert "import matplotlib.pyplot" not in path.read_text(), path


def test_private_keras_apis_are_reached_in_one_place():
    """`keras.src` and Keras' private attributes only through
    `keras_igc/keras_internals.py`, so a Keras upgrade breaks one file."""
    root = pathlib.Path(__file__).parents[1]
    private = ("keras.src", "_nodes_by_depth", "_inbound_nodes", "_flatten_layers",
               "_symbolic_build", "_get_ops_details")  # fmt: skip
    for path in [*root.joinpath("keras_igc").rglob("*.py"),
                 *root.joinpath("applications").rglob("*.py")]:  # fmt: skip
        if path.name == "keras_internals.py":
            continue
        text = path.read_text()
        assert not [name for name in private if name in text], path


def _functions(root):
    for path in [*root.joinpath("keras_igc").rglob("*.py"),
                 *root.joinpath("applications").rglob("*.py")]:  # fmt: skip
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path, node


def test_no_function_is_longer_than_a_screenful_or_so():
    """No function of the package over 100 lines, docstring and decorators
    included: a newcomer reads each one whole."""
    root = pathlib.Path(__file__).parents[1]
    long = [
        f"{path.relative_to(root)}:{node.name} ({length} lines)"
        for path, node in _functions(root)
        if (length := node.end_lineno - min(
            [node.lineno, *(d.lineno for d in node.decorator_list)]) + 1) > 100
    ]  # fmt: skip
    assert not long


def test_only_a_layer_sets_its_execution_form():
    """Layers take their form through `set_execution_form` alone: no other
    module assigns to a layer's private attributes (keras_internals.py, the
    one home of Keras' private APIs, aside)."""
    root = pathlib.Path(__file__).parents[1]
    for path in [*root.joinpath("keras_igc").rglob("*.py"),
                 *root.joinpath("applications").rglob("*.py")]:  # fmt: skip
        if path.parent.name == "layers" or path.name == "keras_internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            for target in targets:
                if not isinstance(target, ast.Attribute):
                    continue
                if target.attr.startswith("_") and not target.attr.endswith("__"):
                    owner = ast.unparse(target.value)
                    assert owner in ("self", "cls"), (path.name, ast.unparse(target))


def test_where_things_go_names_files_that_exist():
    """CONTRIBUTING.md's table names the one file to touch for each kind of
    change; each path in it exists (a `<name>` part: its folder does)."""
    root = pathlib.Path(__file__).parents[1]
    text = (root / "CONTRIBUTING.md").read_text()
    section = text.split("## Where things go", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    changes = [row.split("|")[1].strip() for row in rows]
    for change in ("a runtime", "a weight source", "a form", "a layer",
                   "a network", "a recipe", "a command"):  # fmt: skip
        assert change in changes, f"CONTRIBUTING.md names no file for {change}"
    paths = [
        path for row in rows for path in re.findall(r"`([\w./<>-]+\.(?:py|md))`", row)
    ]
    assert len(paths) >= 15
    for path in paths:
        parts = pathlib.PurePosixPath(path).parts
        where = root.joinpath(*itertools.takewhile(lambda p: "<" not in p, parts))
        assert where.exists(), f"CONTRIBUTING.md's table names {path}, which is gone"


def test_each_runtime_and_command_is_registered_once():
    """A runtime is its adapter file plus one line in `runtimes.ADAPTERS`
    (and its forms rules); a command is its module plus one in `COMMANDS`."""
    from keras_igc import cli, forms
    from keras_igc.export import runtimes

    root = pathlib.Path(__file__).parents[1]
    adapters = {
        path.stem
        for path in (root / "keras_igc" / "export").glob("*.py")
        if re.search(r"^NAME = ", path.read_text(), re.M)
    }
    assert adapters == {a.__name__.rsplit(".", 1)[1] for a in runtimes.ADAPTERS}
    assert tuple(runtimes.RUNTIMES) == forms.EXPORT_RUNTIMES
    commands = {
        path.stem
        for path in (root / "keras_igc" / "cli").glob("*.py")
        if re.search(r"^def run\(args\)", path.read_text(), re.M)
    }
    assert commands == {c.__name__.rsplit(".", 1)[1] for c in cli.COMMANDS}
