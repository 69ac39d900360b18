"""Keras' own weight quantization (`model.quantize("int8")`) for keras_igc's
convolutions: `Int8Kernel`, mixed into `GroupConv2D` (an IGCV2 block's
pointwise steps, an MSGC layer's convolution), into the primary and
secondary convolutions of `IGCConv2D` and into an IGCV2 block's depthwise
step. Keras quantizes the mask generators' `Dense` layers itself.

Keras (through 3.15) quantizes `Dense`, `EinsumDense` and `Embedding` and
skips every convolution with a warning. A quantized keras_igc convolution
stores its kernel as int8 with one symmetric scale per output channel
(integers in [-127, 127], what the int8 exports store; a depthwise kernel
one per channel and multiplier) and computes with
the kernel dequantized: a quarter of the kernel's memory, the same
arithmetic as before on every backend. Activations stay float (the exports'
`--quantize int8` and quantization-aware training, `keras_igc.quantization`,
round those). It saves and loads like Keras' quantized `Dense`: the layer's
dtype policy becomes `"int8_from_<policy>"`, and the file holds the int8
kernel and its scales. A keras_igc layer that holds such convolutions
records which of them are int8 in its config (`quantized`, `quantized_paths`
and `sublayer_policy` below), so that a saved quantized layer loads as one.
"""

import keras
import numpy as np
from keras import ops

MODE = "int8"
LEVELS = 127


def per_channel_int8(kernel, axis=-1):
    """`(integers, scales)`: `kernel` (a NumPy array) as int8 in [-127, 127]
    with one symmetric float32 scale per index of `axis` (its output
    channels; a tuple of trailing axes for a depthwise kernel's channels and
    multipliers), the form the int8 exports store (ONNX's QDQ kernels of a
    quantization-aware model use it too)."""
    kernel = np.asarray(kernel, "float64")
    axes = {a % kernel.ndim for a in (axis if isinstance(axis, tuple) else (axis,))}
    others = tuple(i for i in range(kernel.ndim) if i not in axes)
    scale = np.maximum(np.abs(kernel).max(axis=others, keepdims=True), 1e-12) / LEVELS
    integers = np.clip(np.round(kernel / scale), -LEVELS, LEVELS)
    kept = tuple(kernel.shape[a] for a in sorted(axes))
    return integers.astype("int8"), scale.reshape(kept).astype("float32")


def quantized_paths(sublayers):
    """`{path: mode}` of the `sublayers` (`{path: layer}`) that
    `model.quantize` stored as int8: what a layer that holds them records
    in its config (empty: the default config stays as it was)."""
    return {
        path: layer.quantization_mode
        for path, layer in sublayers.items()
        if layer is not None and layer.quantization_mode is not None
    }


def check_quantized(quantized, paths, owner):
    """`quantized` (a config's, None for none) as a dict of sublayer paths
    among `paths` and their mode, or a ValueError naming them."""
    quantized = quantized or {}
    if not isinstance(quantized, dict) or any(
        path not in paths or mode != MODE for path, mode in quantized.items()
    ):
        example = {path: MODE for path in list(paths)[:2]}
        raise ValueError(
            f"{owner} `quantized` names the sublayers model.quantize('int8') "
            f"stored as int8, among {list(paths)}, e.g. {example}. Received: "
            f"quantized={quantized!r}."
        )
    return quantized


def sublayer_policy(policy, quantized, path):
    """The dtype policy of sublayer `path`: its owner's `policy`, or its
    int8 form where `quantized` names it (a saved quantized layer)."""
    mode = quantized.get(path)
    if mode is None:
        return policy
    return keras.dtype_policies.get(f"{mode}_from_{policy.name}")


class Int8Kernel:
    """A mixin for a `keras.layers.Conv2D` subclass: `quantize("int8")`."""

    # The kernel axes that hold its output channels (one scale each).
    CHANNEL_AXES = (-1,)

    def quantize(self, mode=None, type_check=True, config=None):
        if mode != MODE:
            raise NotImplementedError(
                f"{type(self).__name__} {self.name!r} quantizes its kernel to int8 "
                f"only (model.quantize('int8')). Received: mode={mode!r}."
            )
        values, scale = per_channel_int8(
            ops.convert_to_numpy(self._kernel.value), self.CHANNEL_AXES
        )
        shape = self._kernel.shape
        del self._kernel
        self.quantized_build(shape, mode)
        self._kernel.assign(values)
        self.kernel_scale.assign(scale)
        if self.dtype_policy.quantization_mode is None:
            self.dtype_policy = keras.dtype_policies.get(
                f"{mode}_from_{self.dtype_policy.name}"
            )

    def quantized_build(self, kernel_shape, mode, config=None):
        if mode != MODE:
            raise self._quantization_mode_error(mode)
        self._kernel = self.add_weight(
            name="kernel", shape=kernel_shape, initializer="zeros", dtype="int8",
            trainable=False,
        )  # fmt: skip
        channels = tuple(kernel_shape[a] for a in self.CHANNEL_AXES)
        self.kernel_scale = self.add_weight(
            name="kernel_scale", shape=channels, initializer="ones", trainable=False,
        )  # fmt: skip
        self._is_quantized = True

    def build(self, input_shape):
        super().build(input_shape)
        # Loaded with an int8 policy (a saved quantized model): the int8
        # variables replace the float kernel before the weights are read.
        if self.quantization_mode == MODE and not getattr(self, "_is_quantized", False):
            shape = self._kernel.shape
            del self._kernel
            self.quantized_build(shape, MODE)

    @property
    def kernel(self):
        if self.quantization_mode == MODE and getattr(self, "_is_quantized", False):
            dtype = self.compute_dtype
            return ops.cast(self._kernel, dtype) * ops.cast(self.kernel_scale, dtype)
        return super().kernel

    def _int8_call(self, inputs, training=None):
        return self.call(inputs)

    def _int8_variables(self):
        bias = [self.bias] if self.use_bias else []
        return [self._kernel, *bias, self.kernel_scale]

    def save_own_variables(self, store):
        if self.quantization_mode != MODE:
            return super().save_own_variables(store)
        for i, variable in enumerate(self._int8_variables()):
            store[str(i)] = variable

    def load_own_variables(self, store):
        if self.quantization_mode != MODE:
            return super().load_own_variables(store)
        variables = self._int8_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"Layer {self.name!r} is int8-quantized and expects "
                f"{len(variables)} variables (the int8 kernel, the bias, the "
                f"scales); the file holds {len(store.keys())}. Load the file "
                f"into the model it was saved from."
            )
        for i, variable in enumerate(variables):
            variable.assign(store[str(i)])


class QuantizableConv2D(Int8Kernel, keras.layers.Conv2D):
    """`keras.layers.Conv2D` with `quantize("int8")`: an `IGCConv2D`'s primary
    and secondary convolutions, which `model.quantize` reaches as leaves."""


class QuantizableDepthwiseConv2D(Int8Kernel, keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` with `quantize("int8")`: an IGCV2
    block's depthwise step. One scale per channel and multiplier."""

    CHANNEL_AXES = (-2, -1)

    # Keras' DepthwiseConv2D keeps its kernel in a plain attribute; here it
    # lives in `_kernel`, behind Int8Kernel's dequantizing property.
    @property
    def kernel(self):
        if self.quantization_mode == MODE and getattr(self, "_is_quantized", False):
            return Int8Kernel.kernel.fget(self)
        return self._kernel

    @kernel.setter
    def kernel(self, variable):
        self._kernel = variable
