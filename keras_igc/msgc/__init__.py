"""Learned grouped convolutions (MSGC): convert dense networks, train to a MAC target.

MSGC fine-tunes a dense network: chosen convolutions become `MSGCConv2D`
layers that start from the dense kernels, and a `MACRegularizer` at the output
adds `weight * max(0, MACs / dense MACs - tau)` to the loss while
`MACTargetScheduler` lowers `tau` from 1 to the target.

Two ways to build an MSGC network, each for its own use:

- `convert(model, rules)`: any dense Functional model of yours, its chosen
  convolutions rewritten with the same weights; MACs counted generically
  (the dense model's, each converted convolution scaled by its gates).
- `keras_igc.applications.MSGCResNet18`, `MSGCResNet50`, `MSGCMobileNetV2`
  (applications/msgc_hosts.py): the release's three networks, built layer
  by layer as the release wires them and counting MACs term by term as it
  does, so that its checkpoints load and its figures are reproduced.

`compile_for_msgc` sets up the published recipe; `plot_topology` draws which
input channels each head reads.

The package's modules, one job each: `conversion` (`convert`), `model`
(`MSGCModel`), `recipe` (the release's recipe) and `inspection` (MACs,
gates and heads at inference).
"""

from keras_igc.msgc.conversion import convert, copy_weights_by_name
from keras_igc.msgc.inspection import (
    head_masks,
    inference_gates,
    inference_macs,
    mac_regularizer,
    msgc_layers,
    open_gates,
)
from keras_igc.msgc.model import MACMetrics, MSGCModel
from keras_igc.msgc.recipe import (
    MASK_GENERATOR_PATTERN,
    NORMALIZATION_PATTERN,
    RELEASE_RECIPES,
    MACTargetScheduler,
    ReleaseRecipe,
    compile_for_msgc,
    mask_variables,
    release_recipe,
)
from keras_igc.plotting import plot_topology  # which channels each head reads

__all__ = [
    "MACMetrics",
    "MACTargetScheduler",
    "MASK_GENERATOR_PATTERN",
    "MSGCModel",
    "NORMALIZATION_PATTERN",
    "RELEASE_RECIPES",
    "ReleaseRecipe",
    "compile_for_msgc",
    "convert",
    "copy_weights_by_name",
    "head_masks",
    "inference_gates",
    "inference_macs",
    "mac_regularizer",
    "mask_variables",
    "msgc_layers",
    "open_gates",
    "plot_topology",
    "release_recipe",
]
