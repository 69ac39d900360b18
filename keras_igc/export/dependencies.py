"""What an export needs that keras_igc does not install by default."""

import importlib

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


def check_backend():
    if keras.backend.backend() not in SUPPORTED_BACKENDS:
        raise RuntimeError(
            f"keras_igc.export needs the TensorFlow backend (SavedModel and "
            f"LiteRT are TensorFlow formats). Running on "
            f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow."
        )
