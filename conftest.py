"""The suite runs on every Keras backend (KERAS_BACKEND=tensorflow, jax, torch).

Two markers (registered in pyproject.toml) say what runs where:

- `tensorflow_only`: a test file (`pytestmark`) that exercises TensorFlow-only
  features (tf.data, tf.distribute, SavedModel/LiteRT/ONNX export) or that
  checks the networks' counts, which do not depend on the backend (their
  layers are tested on every backend; under eager JAX the networks alone took
  minutes). Docstring examples follow the module's `SUPPORTED_BACKENDS`.
  On the other backends these are deselected, not skipped: they are run by
  the TensorFlow pass of the same suite.
- `slow`: subprocess runs of whole trainings (`-m "not slow"` for a quick loop).
"""

import keras
import pytest

# Scripts that regenerate the parity fixtures with the releases' frameworks
# (PyTorch, MXNet); the tests read only the files they wrote.
collect_ignore_glob = ["tests/fixtures/*"]


def _runs_here(item):
    if isinstance(item, pytest.DoctestItem):
        backends = item.dtest.globs.get("SUPPORTED_BACKENDS")
        return backends is None or keras.backend.backend() in backends
    return (
        item.get_closest_marker("tensorflow_only") is None
        or keras.backend.backend() == "tensorflow"
    )


def pytest_collection_modifyitems(config, items):
    deselected = [item for item in items if not _runs_here(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if _runs_here(item)]
