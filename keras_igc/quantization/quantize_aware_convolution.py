import keras
import numpy as np
from keras import ops

from keras_igc import ops as igc_ops
from keras_igc.layers import IGCConv2D
from keras_igc.quantization import batch_norm_folding
from keras_igc.quantization.activation_quantizer import ActivationQuantizer
from keras_igc.quantization.fake_quant import (
    quantize_bias,
    quantize_weights,
    weight_scale,
)

# The layers whose kernels it quantizes (a grouped Conv2D as `GroupConv2D`).
LINEAR_LAYERS = (
    IGCConv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Conv2D,
    keras.layers.Dense,
)
# The activations an int8 kernel applies to its own output (LiteRT and ONNX
# Runtime fuse them), and softmax, which runs after the rounded logits.
ACTIVATIONS = ("linear", "relu", "relu6", "softmax")


@keras.saving.register_keras_serializable(package="keras_igc")
class QuantizeAwareConvolution(keras.layers.Wrapper):
    """A convolution (or `Dense`) trained under the int8 rounding of its export.

    It computes what the exported int8 kernel computes, in float: the
    BatchNorm that follows the convolution folded into its kernel and bias,
    the folded kernel rounded to int8 with one scale per output channel, the
    fused activation, and the output rounded to the 256 levels of its range
    (`ActivationQuantizer`). An `IGCConv2D` is two kernels: its primary
    output is rounded too (the exported block holds it as an int8 tensor),
    the permutations are exact.

    BatchNorm is folded as the standard QAT recipe folds it (Jacob et al.,
    2018): the kernel is scaled by the moving statistics and rounded, the
    convolution's output is scaled back and normalised with the batch's
    statistics, which keep updating the moving ones; once
    `batch_norm_frozen` is 1 (`keras_igc.quantization.FreezeBatchNorm`),
    training uses the moving statistics and computes the folded layer the
    export writes. At inference it computes exactly that layer, its bias
    on the int32 grid the int8 files store it on (`input_range`).

    `keras_igc.quantization.quantize_aware` builds these from a float model;
    you rarely build one yourself.

    Args:
        layer: the float layer (an `IGCConv2D`, `Conv2D`, `GroupConv2D`,
            `DepthwiseConv2D` or `Dense`, or its serialized config), whose
            weights it trains. Its own activation must be linear: pass it as
            `activation`.
        batch_norm: the `BatchNormalization` (or config) folded into it, or
            None.
        activation: `"linear"`, `"relu"`, `"relu6"`, or `"softmax"` (applied
            after the rounded logits, in float).
        momentum: the output ranges' moving-average momentum.
        emit_range: also return its output's range, `[outputs, (min, max)]`
            (`ActivationQuantizer`'s), for the convolutions that read it.
        **kwargs: base layer keyword arguments, such as `name`.

    Call arguments:
        inputs: the (rounded) input.
        input_range: the input's `(min, max)` rounding range, a tensor of
            shape (2,), or None. At inference the bias (the folded one with
            a BatchNorm) lies on the int32 grid that the int8 files store it
            on, the input's step times each channel's kernel step; without
            `input_range` it stays float (an IGC block's bias follows its
            own rounded primary output and always lies on it).
        training: training mode.

    Example:

    >>> import keras, numpy as np, keras_igc
    >>> from keras_igc.quantization import QuantizeAwareConvolution
    >>> layer = QuantizeAwareConvolution(
    ...     keras_igc.IGCConv2D(4, 2, padding="same", use_bias=False),
    ...     batch_norm=keras.layers.BatchNormalization(), activation="relu")
    >>> x = np.random.default_rng(0).normal(size=(2, 8, 8, 8)).astype("float32")
    >>> tuple(layer(x, training=True).shape)
    (2, 8, 8, 8)
    """

    def __init__(self, layer, batch_norm=None, activation="linear", momentum=0.99,
                 emit_range=False, **kwargs):  # fmt: skip
        super().__init__(_layer(layer), **kwargs)
        if not isinstance(self.layer, LINEAR_LAYERS):
            raise ValueError(
                f"QuantizeAwareConvolution wraps an IGCConv2D, Conv2D, "
                f"GroupConv2D, DepthwiseConv2D or Dense layer. Received: "
                f"{type(self.layer).__name__} {self.layer.name!r}."
            )
        own = activation_name(self.layer)
        if own != "linear":
            raise ValueError(
                f"The wrapped layer {self.layer.name!r} has activation={own!r}; "
                f"give it activation=None and pass activation={own!r} to "
                f"QuantizeAwareConvolution, which applies it before rounding."
            )
        if isinstance(self.layer, keras.layers.Conv2D) and self.layer.groups > 1:
            if self.layer.data_format != "channels_last":
                raise ValueError(
                    f"Grouped convolution {self.layer.name!r} is channels_first; "
                    f"QAT takes channels_last grouped convolutions only."
                )
        self.batch_norm = None if batch_norm is None else _layer(batch_norm)
        batch_norm_folding.check(self.batch_norm, "QuantizeAwareConvolution")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {ACTIVATIONS}. Received: "
                f"activation={activation!r}."
            )
        self.activation = activation
        self.momentum = momentum
        self.emit_range = bool(emit_range)
        policy = self.dtype_policy
        self.output_quantizer = ActivationQuantizer(
            momentum, name="output_quantizer", dtype=policy
        )
        self.intermediate_quantizer = None
        if isinstance(self.layer, IGCConv2D):
            # The primary's output is an int8 tensor in the exported block.
            self.intermediate_quantizer = ActivationQuantizer(
                momentum, name="intermediate_quantizer", dtype=policy
            )

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        output_shape = self.layer.compute_output_shape(input_shape)
        if self.intermediate_quantizer is not None:
            self.intermediate_quantizer.build(
                self.layer.primary.compute_output_shape(input_shape)
            )
        if self.batch_norm is not None:
            if not self.batch_norm.built:
                self.batch_norm.build(output_shape)
            self.batch_norm_frozen = self.add_weight(
                shape=(), initializer="zeros", trainable=False,
                name="batch_norm_frozen", dtype="float32",
            )  # fmt: skip
        self.output_quantizer.build(output_shape)
        if isinstance(self.layer, IGCConv2D):
            # Output channel o is secondary channel order[o] (igc_ops.output_bias).
            L, M = self.layer.primary_partitions, self.layer.secondary_partitions
            order = np.asarray(igc_ops.output_bias(np.arange(L * M), L, M))
            self._secondary_order = np.argsort(order)
            self._output_order = order

    def call(self, inputs, input_range=None, training=False):
        scale = self._batch_norm_scale()
        kernels = self._rounded_kernels(scale)
        outputs = self._linear(inputs, kernels, training)
        bias = self._bias()

        def on_grid(bias):  # the int8 files' bias: on their int32 grid
            return self._bias_on_grid(bias, kernels, input_range)

        if self.batch_norm is not None:
            outputs = batch_norm_folding.normalize(
                self.batch_norm, self.batch_norm_frozen, outputs, scale, bias,
                training, on_grid,
            )  # fmt: skip
        else:
            outputs = batch_norm_folding.with_bias(outputs, bias, training, on_grid)
        outputs = fused_activation(outputs, self.activation)
        outputs = self.output_quantizer(outputs, training=training)
        if self.activation == "softmax":
            outputs = ops.softmax(outputs, axis=-1)
        # The wrapped layer keeps its own type (quantize_aware: float32).
        outputs = ops.cast(outputs, self.compute_dtype)
        if self.emit_range:
            return [outputs, self.output_quantizer.range_tensor()]
        return outputs

    def _batch_norm_scale(self):
        return batch_norm_folding.scale(self.batch_norm)

    def _bias_on_grid(self, bias, kernels, input_range):
        """`bias` (output order) on the int32 grid the int8 files store it
        on: the input's step times each output channel's kernel step. An
        IGC block's bias follows its secondary, whose input is the rounded
        primary output; another layer's input range is `input_range` (None:
        not known, the bias stays float)."""
        layer = self.layer
        if isinstance(layer, IGCConv2D):
            input_range = self.intermediate_quantizer.range_tensor()
            kernel_scale = ops.take(
                ops.reshape(weight_scale(kernels[1]), (-1,)), self._output_order
            )
        elif input_range is None:
            return bias
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel_scale = weight_scale(kernels[0], axes=(2, 3))
        else:
            kernel_scale = weight_scale(kernels[0])
        return quantize_bias(bias, input_range, kernel_scale)

    def _linear(self, inputs, kernels, training):
        """The convolution with its (folded, rounded) `kernels`, no bias."""
        layer = self.layer
        if isinstance(layer, IGCConv2D):
            L, M = layer.primary_partitions, layer.secondary_partitions
            path = layer.active_implementation
            # QAT rounds the primary's output, so the block is never computed
            # as its dense-equivalent kernel.
            path = "grouped" if path == "dense" else path
            middle = igc_ops.GROUPED_CONVOLUTIONS[path](
                inputs, kernels[0], L, strides=layer.strides,
                padding=layer.padding, dilation_rate=layer.dilation_rate,
            )  # fmt: skip
            middle = self.intermediate_quantizer(middle, training=training)
            return igc_ops.secondary_dense(middle, kernels[1], L, M)
        (kernel,) = kernels
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            return ops.depthwise_conv(
                inputs, kernel, strides=layer.strides, padding=layer.padding,
                data_format=layer.data_format, dilation_rate=layer.dilation_rate,
            )  # fmt: skip
        if isinstance(layer, keras.layers.Dense):
            return ops.matmul(inputs, kernel)
        return layer.convolution_op(inputs, kernel)

    def _rounded_kernels(self, scale):
        """The kernels scaled by the BatchNorm scale (None: none) and
        rounded per output channel: `[kernel]`, or an IGC block's
        `[primary, secondary]` (the secondary in its stored order)."""
        layer = self.layer
        if isinstance(layer, IGCConv2D):
            kernel = layer.secondary.kernel
            if scale is not None:
                kernel = kernel * ops.take(scale, self._secondary_order)
            return [quantize_weights(layer.primary.kernel), quantize_weights(kernel)]
        kernel = layer.kernel
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            # Output channel c * multiplier + j is kernel[..., c, j].
            if scale is not None:
                kernel = kernel * ops.reshape(scale, kernel.shape[2:])
            return [quantize_weights(kernel, axes=(2, 3))]
        if scale is not None:
            kernel = kernel * scale
        return [quantize_weights(kernel)]

    def folded_weights(self, input_range=None):
        """What the int8 files hold, as float NumPy arrays: `(kernels, bias)`,
        the rounded kernels with the BatchNorm folded in (`[kernel]`; for an
        IGC block `[primary, secondary]`, the secondary as one 1x1 kernel
        that holds both permutations, `igc_ops.secondary_block_diagonal`:
        each output channel keeps its values and so its rounding) and the
        bias in output order (None without one), on the int32 grid of the
        input's `input_range` (`(min, max)`; an IGC block knows its own)."""
        scale = self._batch_norm_scale()
        kernels = self._rounded_kernels(scale)
        bias = self._bias()
        if self.batch_norm is not None:
            bias = batch_norm_folding.folded_bias(self.batch_norm, scale, bias)
        if bias is not None:
            if input_range is not None:
                input_range = ops.convert_to_tensor(input_range, "float32")
            bias = self._bias_on_grid(bias, kernels, input_range)
        if isinstance(self.layer, IGCConv2D):
            L, M = self.layer.primary_partitions, self.layer.secondary_partitions
            matrix = igc_ops.secondary_block_diagonal(kernels[1], L, M)
            kernels[1] = ops.reshape(matrix, (1, 1, L * M, L * M))
        kernels = [ops.convert_to_numpy(k) for k in kernels]
        return kernels, None if bias is None else ops.convert_to_numpy(bias)

    def _bias(self):
        """The layer's bias in output channel order, or None."""
        if isinstance(self.layer, IGCConv2D):
            return self.layer.dense_equivalent_bias()
        return self.layer.bias if self.layer.use_bias else None

    def compute_output_shape(self, input_shape):
        shape = self.layer.compute_output_shape(input_shape)
        return [shape, (2,)] if self.emit_range else shape

    def get_config(self):
        return {
            **super().get_config(),  # the wrapped layer's, as Keras' wrappers do
            **batch_norm_folding.fused_config(
                self.batch_norm, self.activation, self.momentum
            ),
        } | ({"emit_range": True} if self.emit_range else {})


def _layer(layer):
    """A layer, or one deserialized from its config (`from_config`)."""
    if isinstance(layer, dict):
        return keras.saving.deserialize_keras_object(layer)
    if not isinstance(layer, keras.layers.Layer):
        raise ValueError(
            f"Expected a Keras layer or its serialized config. Received: {layer!r}."
        )
    return layer


def fused_activation(outputs, activation):
    """`outputs` through the activation an int8 kernel fuses (ReLU, ReLU6);
    others (linear, softmax after the rounding) are left to the caller."""
    if activation == "relu":
        return ops.relu(outputs)
    if activation == "relu6":
        return ops.relu6(outputs)
    return outputs


def activation_name(layer):
    """The name of `layer`'s own activation (`"linear"` without one)."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    return keras.activations.serialize(activation)
