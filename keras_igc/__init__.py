"""keras-igc: interleaved group convolutions (IGC) and learned grouped
convolutions (MSGC) for Keras 3."""

import os
import sys

__version__ = "0.1.0"

__all__ = [
    "IMPLEMENTATIONS",
    "ChannelShuffle",
    "GhostBatchNormalization",
    "GroupConv2D",
    "GumbelSigmoidGate",
    "IGCConv2D",
    "MACRegularizer",
    "MSGCConv2D",
    "MaskGenerator",
    "applications",
    "complexity",
    "ops",
]


def _load():
    """Import the package's contents (and so Keras and its backend), which
    registers the layers for `keras.saving.load_model`."""
    import importlib

    modules = ("applications", "complexity", "ops")
    names = {m: importlib.import_module(f"keras_igc.{m}") for m in modules}
    layers = importlib.import_module("keras_igc.layers")
    names.update({name: getattr(layers, name) for name in __all__ if name not in names})
    globals().update(names)


def __getattr__(name):
    if name in __all__:
        _load()
        return globals()[name]
    raise AttributeError(f"module 'keras_igc' has no attribute {name!r}")


# The `keras-igc` command parses its arguments before Keras and TensorFlow
# start (`--help` and typos answer at once) and loads the rest after
# (`cli.main`); everywhere else, importing keras_igc loads everything.
if os.path.basename(getattr(sys, "argv", [""])[0] or "") != "keras-igc":
    _load()
