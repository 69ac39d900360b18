"""The suite runs on every Keras backend (KERAS_BACKEND=tensorflow, jax, torch).

Files that exercise TensorFlow-only features are collected only on the
TensorFlow backend, and so is test_applications.py: the networks are built
from the layers tested on every backend, its counts do not depend on the
backend, and under eager JAX it alone took minutes. (The applications'
docstring examples still build networks on every backend.)
"""

import keras

TENSORFLOW_ONLY = [
    "test_applications.py",
    "test_data.py",
    "test_no_xla_on_cpu.py",
    "test_savedmodel_export.py",
    "test_training.py",
    "test_packaging.py",
    "test_tutorials.py",
]

if keras.backend.backend() != "tensorflow":
    collect_ignore = TENSORFLOW_ONLY
