"""The suite runs on every Keras backend (KERAS_BACKEND=tensorflow, jax, torch).

Files that exercise TensorFlow-only features are collected only on the
TensorFlow backend; everything else runs everywhere.
"""

import keras

TENSORFLOW_ONLY = [
    "test_data.py",
    "test_no_xla_on_cpu.py",
    "test_savedmodel_export.py",
    "test_training.py",
    "test_packaging.py",
    "test_tutorials.py",
]

if keras.backend.backend() != "tensorflow":
    collect_ignore = TENSORFLOW_ONLY
