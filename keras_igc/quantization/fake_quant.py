"""The rounding the int8 exports apply, as differentiable float functions.

Weights: symmetric, one scale per output channel, integers in [-127, 127]
(what LiteRT's converter and ONNX Runtime's QDQ quantizer write for
convolutions: grouped and depthwise kernels need a scale per channel, their
channels' ranges differ by orders of magnitude). Activations: one scale and
zero point per tensor over [min, max], 256 levels, zero exact (TensorFlow's
`FakeQuantWithMinMaxVars` nudging, which the converters read). Biases: int32
on the grid of the input's scale times the kernel's (what both runtimes
store; a float bias off that grid moves outputs that lie near a step's edge
to the other step: on IGCV3-0.25 it alone made the int8 files disagree with
the QAT model on 2-3 % of the digits). All pass the gradient straight through
(the straight-through estimator): rounding has a zero gradient almost
everywhere.
"""

import keras
from keras import ops

WEIGHT_LEVELS = 127  # symmetric int8 weights: [-127, 127]
ACTIVATION_BITS = 8


def weight_scale(kernel, axes=(-1,)):
    """The int8 step of each output channel of `kernel` (the indices of
    `axes`: a depthwise kernel's are its last two), broadcastable to it."""
    rank = len(kernel.shape)
    kept = {axis % rank for axis in axes}
    reduce = tuple(i for i in range(rank) if i not in kept)
    largest = ops.max(ops.abs(kernel), axis=reduce, keepdims=True)
    # A channel of zeros keeps its zeros (no division by a zero scale).
    return ops.maximum(largest, 1e-12) / WEIGHT_LEVELS


def quantize_weights(kernel, axes=(-1,)):
    """`kernel` rounded to int8 steps with one symmetric scale per index of
    `axes` (its output channels: a depthwise kernel's are its last two),
    gradient passed straight through."""
    scale = weight_scale(kernel, axes)
    rounded = ops.clip(ops.round(kernel / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS)
    return kernel + ops.stop_gradient(rounded * scale - kernel)


def quantize_bias(bias, input_range, kernel_scale):
    """`bias` (one per output channel) on the int32 grid of the input's step
    times each channel's kernel step `kernel_scale` (flat, in output order),
    as the int8 files store it. `input_range`: `(min, max)` of the input's
    rounding (`ActivationQuantizer.range_tensor`); an empty one ([0, 0]: the
    input not rounded yet) leaves the bias as it is."""
    bias = ops.convert_to_tensor(bias)
    low, high = activation_range(input_range[0], input_range[1])
    step = (high - low) / (2**ACTIVATION_BITS - 1)
    grid = ops.reshape(kernel_scale, (-1,)) * step
    rounded = ops.round(bias / grid) * grid
    rounded = ops.where(input_range[1] > input_range[0], rounded, bias)
    return bias + ops.stop_gradient(rounded - bias)


def activation_range(low, high):
    """`[low, high]` widened to hold zero (and never empty), as the
    converters widen it."""
    low = ops.minimum(ops.cast(low, "float32"), 0.0)
    high = ops.maximum(ops.maximum(ops.cast(high, "float32"), 0.0), low + 1e-6)
    return low, high


def quantize_activations(x, low, high):
    """`x` on the 256 levels of the range `[low, high]` (widened to hold
    zero, as the converters do), gradient passed straight through inside
    the range and zero outside it."""
    low, high = activation_range(low, high)
    # TensorFlow's kernel takes float32 only; a mixed-precision tensor goes
    # back to its own type.
    rounded = keras.quantizers.fake_quant_with_min_max_vars(
        ops.cast(x, "float32"), low, high, num_bits=ACTIVATION_BITS, narrow_range=False
    )
    return ops.cast(rounded, x.dtype)
