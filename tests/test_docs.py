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
