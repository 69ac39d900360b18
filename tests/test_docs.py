"""The README and docs/ as a newcomer reads them: links resolve, the first
example runs as printed, and every doc the README promises exists."""

import os
import pathlib
import re
import subprocess
import sys

import fresh_process
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


# The order a newcomer reads them in: the README first (its quick start
# writes runs/digits and digit.png, which docs/ go on from), then docs/.
RUNNABLE_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `<!-- docs-test: skip: WHY -->` on the line before a block: it needs what
# no test machine has (the network, a GPU, a checkpoint downloaded by hand),
# or it is an install or the suite itself. Counted, so that none slips in.
SKIP = re.compile(r"<!-- docs-test: skip: (.+?) -->\n```(\w+)\n(.*?)```", re.S)
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)
EXPECTED_SKIPS = 16


def doc_blocks():
    """`(doc, line, language, code, why skipped or None)` of every shell and
    Python block of the README and docs/, in reading order."""
    blocks = []
    for doc in RUNNABLE_DOCS:
        text = doc.read_text()
        skipped = {m.start(2) - 3: m.group(1) for m in SKIP.finditer(text)}
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            why = skipped.get(match.start())
            blocks.append(
                (doc.relative_to(ROOT), line, match.group(1), match.group(2), why)
            )
    return blocks


def test_every_block_not_run_says_why_and_they_are_counted():
    skipped = [(str(d), line, why) for d, line, _, _, why in doc_blocks() if why]
    text = "".join(doc.read_text() for doc in RUNNABLE_DOCS)
    assert len(skipped) == len(re.findall("docs-test: skip", text)), (
        "a docs-test marker is not right before a ```bash or ```python block"
    )
    assert len(skipped) == EXPECTED_SKIPS, skipped


@pytest.mark.slow
def test_the_docs_run_as_written(tmp_path):
    """Every shell and Python block of the README and docs/, in order, each in
    a fresh process, in one folder (each block reads what the ones before it
    wrote), from the installed package, shortened by KERAS_IGC_QUICK=1 alone."""
    os.symlink(ROOT / "tutorials", tmp_path / "tutorials")
    env = {
        **os.environ, "KERAS_BACKEND": "tensorflow", "KERAS_IGC_QUICK": "1",
        "KERAS_HOME": str(tmp_path / ".keras"),
        "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    ran = 0
    with fresh_process.forked_commands(env, timeout=900) as forked:
        for doc, line, language, code, why in doc_blocks():
            if why:
                continue
            result = run_block(doc, language, code, tmp_path, env, forked)
            assert result.returncode == 0, (
                f"{doc}:{line} ({language}) exited {result.returncode}:\n"
                f"{code}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
            )
            ran += 1
    assert ran >= 18  # the blocks the parser found and ran
    # What the README's quick start wrote, and the class it gave the digit.
    assert (tmp_path / "exported" / "preprocessing.json").is_file()
    assert (tmp_path / "exported-int8" / "model_int8.tflite").is_file()


def run_block(doc, language, code, folder, env, forked):
    """A block in a fresh process: Python blocks forked after the import
    (tests/fresh_process.py); shell blocks in bash, the README's `keras-igc`
    commands as real processes (the console script and the first import, as
    a newcomer types them), those of docs/ forked through `forked` (a folder
    from `fresh_process.forked_commands`; ~5 s of import saved on each)."""
    if language == "python":
        command = [sys.executable, "-c", code]
        return fresh_process.run(command, cwd=folder, env=env, timeout=900)
    if str(doc) != "README.md":
        env = {**env, "PATH": f"{forked}{os.pathsep}{env['PATH']}"}
    command = ["bash", "-e", "-o", "pipefail", "-c", code]
    return fresh_process.run(command, cwd=folder, env=env, timeout=900)


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
