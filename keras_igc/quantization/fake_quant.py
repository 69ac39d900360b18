"""The rounding the int8 exports apply, as differentiable float functions.

Weights: symmetric, one scale per output channel, integers in [-127, 127]
(what LiteRT's converter and ONNX Runtime's QDQ quantizer write for
convolutions: grouped and depthwise kernels need a scale per channel, their
channels' ranges differ by orders of magnitude). Activations: one scale and
zero point per tensor over [min, max], 256 levels, zero exact (TensorFlow's
`FakeQuantWithMinMaxVars` nudging, which the converters read). Both pass the
gradient straight through (the straight-through estimator): rounding has a
zero gradient almost everywhere.
"""

import keras
from keras import ops

WEIGHT_LEVELS = 127  # symmetric int8 weights: [-127, 127]
ACTIVATION_BITS = 8


def quantize_weights(kernel, axes=(-1,)):
    """`kernel` rounded to int8 steps with one symmetric scale per index of
    `axes` (its output channels: a depthwise kernel's are its last two),
    gradient passed straight through."""
    rank = len(kernel.shape)
    kept = {axis % rank for axis in axes}
    reduce = tuple(i for i in range(rank) if i not in kept)
    largest = ops.max(ops.abs(kernel), axis=reduce, keepdims=True)
    # A channel of zeros keeps its zeros (no division by a zero scale).
    scale = ops.maximum(largest, 1e-12) / WEIGHT_LEVELS
    rounded = ops.clip(ops.round(kernel / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS)
    return kernel + ops.stop_gradient(rounded * scale - kernel)


def quantize_activations(x, low, high):
    """`x` on the 256 levels of the range `[low, high]` (widened to hold
    zero, as the converters do), gradient passed straight through inside
    the range and zero outside it."""
    low = ops.minimum(ops.cast(low, "float32"), 0.0)
    high = ops.maximum(ops.maximum(ops.cast(high, "float32"), 0.0), low + 1e-6)
    # TensorFlow's kernel takes float32 only; a mixed-precision tensor goes
    # back to its own type.
    rounded = keras.quantizers.fake_quant_with_min_max_vars(
        ops.cast(x, "float32"), low, high, num_bits=ACTIVATION_BITS, narrow_range=False
    )
    return ops.cast(rounded, x.dtype)
