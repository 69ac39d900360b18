"""What an export needs that keras_igc does not install by default, and
the threads the runtimes that run its files get."""

import importlib
import os

import keras

# The formats are TensorFlow's (SavedModel, LiteRT; ONNX through tf2onnx).
SUPPORTED_BACKENDS = ("tensorflow",)


class MissingDependencyError(ImportError):
    """An optional package that a format or runtime needs is not installed."""


def require(module, purpose):
    """Import an optional `module`, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{purpose} needs the `{module}` package, which is not installed. "
            f'Install the extra: pip install "keras-igc[export]".'
        ) from error


def runtime_threads():
    """Threads for the ONNX Runtime and LiteRT sessions that check, time
    and predict with an export: `OMP_NUM_THREADS` where it is set (the
    variable that caps PyTorch's and the math libraries' threads), else
    every core, as ONNX Runtime uses by default.

    Unset, two processes sharing the cores each run a thread per core, and
    ONNX Runtime's threads busy-wait: a test beside an export `--check` ran
    6x slower than alone.
    """
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return os.cpu_count() or 1


def check_backend():
    if keras.backend.backend() not in SUPPORTED_BACKENDS:
        raise RuntimeError(
            f"keras_igc.export needs the TensorFlow backend (SavedModel and "
            f"LiteRT are TensorFlow formats). Running on "
            f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow."
        )
