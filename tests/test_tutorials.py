"""Every tutorial runs to the end as a script (TensorFlow backend)."""

import os
import pathlib
import sys

import fresh_process
import pytest

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.slow]

# Tutorials that train for a while are shortened by the one setting that
# shortens runs (keras_igc/quick.py); the notes on the issues report full runs.
FAST = {"KERAS_IGC_QUICK": "1"}
TUTORIALS = sorted((pathlib.Path(__file__).parents[1] / "tutorials").glob("*.py"))


def test_there_are_tutorials():
    assert TUTORIALS


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs(script, tmp_path):
    result = fresh_process.run(
        [sys.executable, script],
        cwd=tmp_path,
        env={**os.environ, **FAST, "KERAS_BACKEND": "tensorflow", "MPLBACKEND": "Agg"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
