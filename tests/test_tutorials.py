"""Every tutorial runs to the end as a script (TensorFlow backend)."""

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.slow]

# Tutorials that train for a while read their length from the environment; the
# suite checks that they run, the notes on the issues report full runs.
FAST = {
    "MSGC_TUTORIAL_EPOCHS": "1",
    "FINETUNE_TUTORIAL_EPOCHS": "1",
    "DETECT_TUTORIAL_EPOCHS": "1",
    "DETECT_TUTORIAL_IMAGES": "16",
}
TUTORIALS = sorted((pathlib.Path(__file__).parents[1] / "tutorials").glob("*.py"))


def test_there_are_tutorials():
    assert TUTORIALS


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, **FAST, "KERAS_BACKEND": "tensorflow", "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
