"""The README and docs/ as a newcomer reads them: links resolve, the first
example runs as printed, and every doc the README promises exists."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.tensorflow_only

ROOT = pathlib.Path(__file__).parents[1]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "benchmarks/README.md",
        *sorted((ROOT / "docs").glob("*.md"))]  # fmt: skip


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    for target in re.findall(r"\]\(([^)#\s]+)\)", doc.read_text()):
        if "://" not in target:
            assert (doc.parent / target).exists(), f"{doc.name} -> {target}"


def test_the_readme_stays_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 180
    for required in ("LICENSE", "CITATION.cff", "CONTRIBUTING.md"):
        assert (ROOT / required).exists() and required in readme


def test_the_readmes_first_example_runs_as_printed(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    result = subprocess.run(
        [sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True,
        text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": "tensorflow"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "igc.keras").is_file()
    assert (tmp_path / "igc_savedmodel" / "saved_model.pb").is_file()


def test_the_benchmark_index_is_every_benchmark_and_result():
    """benchmarks/README.md's index is `python -m benchmarks --markdown`; it
    names every benchmark module and every results file, and each results
    file it names exists."""
    listed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--markdown"], cwd=ROOT,
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    readme = (ROOT / "benchmarks/README.md").read_text()
    index = re.search(r"<!-- index:[^>]*-->\n(.*?)\n<!-- /index -->", readme, re.S)
    assert index is not None and index.group(1) == listed
    sys.path.insert(0, str(ROOT))
    try:
        import benchmarks
    finally:
        sys.path.remove(str(ROOT))
    helpers = {"__init__", "__main__", "output", "timing", "torch_twin"}
    modules = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - helpers
    assert {b.name for b in benchmarks.BENCHMARKS} == modules
    results = {r for b in benchmarks.BENCHMARKS for r in b.results}
    on_disk = {p.name for p in (ROOT / "benchmarks/results").iterdir()}
    assert results | set(benchmarks.RUNS) == on_disk


def test_benchmarks_are_modules_of_one_package():
    """No script reaches its neighbours through sys.path: each is run as
    `python -m benchmarks.NAME` and imports them as `benchmarks.*`."""
    for path in (ROOT / "benchmarks").glob("*.py"):
        text = path.read_text()
        assert "sys.path" not in text, path.name
        assert not re.search(r"^\s*(from|import) (output|timing|run|torch_twin)\b",
                             text, re.M), path.name  # fmt: skip
