"""keras-igc: interleaved group convolutions (IGC) and learned grouped
convolutions (MSGC) for Keras 3.

The layers are at the top level (`keras_igc.IGCConv2D`, ...); the networks in
`keras_igc.applications`; the rest in submodules named after their job
(`forms`, `ops`, `complexity`, `data`, `training`, `tuning`, `msgc`,
`export`).
"""

import os
import sys

__version__ = "0.1.0"

_LAYERS = (
    "ChannelShuffle",
    "FusedBatchNormalization",
    "GhostBatchNormalization",
    "GroupConv2D",
    "GumbelSigmoidGate",
    "IGCConv2D",
    "IGCV2Conv2D",
    "MACRegularizer",
    "MSGCConv2D",
    "MaskGenerator",
)
_MODULES = ("forms", "ops", "complexity", "applications")
__all__ = ["IMPLEMENTATIONS", "TracedModel", *_LAYERS, *_MODULES]


def _load():
    """Import Keras, the layers (which registers them for
    `keras.saving.load_model`) and the applications.

    Submodules never import `keras_igc` itself, only its submodules, so this
    has no import cycle: the order below is the dependency order.
    """
    import importlib

    names = {m: importlib.import_module(f"keras_igc.{m}") for m in _MODULES[:3]}
    layers = importlib.import_module("keras_igc.layers")
    names.update({name: getattr(layers, name) for name in _LAYERS})
    names["IMPLEMENTATIONS"] = names["forms"].IMPLEMENTATIONS
    names["TracedModel"] = importlib.import_module("keras_igc.traced_model").TracedModel
    names["applications"] = importlib.import_module("keras_igc.applications")
    # The optimizers and MSGC's model too: a model `train` saved with its
    # compile state loads with keras.saving.load_model after `import keras_igc`.
    importlib.import_module("keras_igc.saving").register_serializables()
    globals().update(names)


def __getattr__(name):
    if name in __all__:
        _load()
        return globals()[name]
    raise AttributeError(f"module 'keras_igc' has no attribute {name!r}")


# Importing keras_igc registers its layers, which `keras.saving.load_model`
# needs (Keras imports no third-party module to find a class), so it loads
# Keras at once. The one exception is the `keras-igc` command: it parses its
# arguments before Keras and TensorFlow start (`--help` and typos answer at
# once) and imports the layers after (`cli._start_keras`).
if os.path.basename(getattr(sys, "argv", [""])[0] or "") != "keras-igc":
    _load()
