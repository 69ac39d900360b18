"""The suite runs on every Keras backend (KERAS_BACKEND=tensorflow, jax, torch).

Files that exercise TensorFlow-only features (and the doctests of
keras_igc/export.py, which exports TensorFlow formats, and of
keras_igc/tuning.py, which trains on tf.data) are collected only on the
TensorFlow backend, and so is test_applications.py: the networks are built
from the layers tested on every backend, its counts do not depend on the
backend, and under eager JAX it alone took minutes. (The applications'
docstring examples still build networks on every backend.)
"""

import keras

# Scripts that regenerate the parity fixtures with the releases' frameworks
# (PyTorch, MXNet); the tests read only the files they wrote.
collect_ignore_glob = ["tests/fixtures/*"]

TENSORFLOW_ONLY = [
    "keras_igc/export.py",
    "keras_igc/tuning.py",
    "tests/test_applications.py",
    "tests/test_bad_inputs.py",
    "tests/test_data.py",
    "tests/test_distributed.py",
    "tests/test_export.py",
    "tests/test_msgc.py",
    "tests/test_no_xla_on_cpu.py",
    "tests/test_training.py",
    "tests/test_packaging.py",
    "tests/test_release_weights.py",
    "tests/test_runs.py",
    "tests/test_tutorials.py",
    "tests/test_tuning.py",
]

if keras.backend.backend() != "tensorflow":
    collect_ignore = TENSORFLOW_ONLY
