import keras
from keras import ops

from keras_igc.layers import MSGCConv2D
from keras_igc.layers.msgc_conv2d import split_inputs
from keras_igc.quantization import batch_norm_folding
from keras_igc.quantization.activation_quantizer import ActivationQuantizer
from keras_igc.quantization.fake_quant import (
    quantize_bias,
    quantize_weights,
    weight_scale,
)
from keras_igc.quantization.quantize_aware_convolution import fused_activation

# Where the layer rounds, in the order it computes them. The gates (0/1)
# are exact on the 256 levels of [0, 1]; with attention, the masks (gates
# times the attention) get a range of their own.
ROUNDING_POINTS = ("pool", "hidden", "logits", "masks", "copies", "output")
ATTENTION_POINTS = ("attention_hidden", "attention")
GATE_RANGE = (0.0, 1.0)


@keras.saving.register_keras_serializable(package="keras_igc")
class QuantizeAwareMSGCConv2D(MSGCConv2D):
    """An `MSGCConv2D` trained under the int8 rounding of its export, gates
    included.

    The int8 files run an MSGC layer in its masked form, every step on int8
    tensors: the pooled mask source, the generator's hidden layer (its
    BatchNorm folded into the squeeze, ReLU fused), the mask logits, the
    gates (0 or 1: exact), the masked copies of the input and the grouped
    convolution's output (the BatchNorm after the layer folded into its
    kernel, ReLU or ReLU6 fused). This layer computes the same in float: each
    of those tensors rounded to the 256 levels of its range
    (`ActivationQuantizer`, moving averages), each kernel rounded to int8
    per output channel, every BatchNorm folded as
    `keras_igc.quantization.QuantizeAwareConvolution` folds it. The gates
    are thresholds of the rounded logits, so training sees the decisions
    the int8 file will take. With `attention`, the attention generator is
    rounded the same way and the masks (gates times attention) too.

    It is an `MSGCConv2D` with the same sublayers and weights, so the MSGC
    tools (`keras_igc.msgc.inference_gates`, the MAC regulariser, the
    exports' gate-flip count) read it as they read the float layer. It
    always computes the masked form. `keras_igc.quantization.quantize_aware`
    builds it from a float network; you rarely build one yourself.

    Args:
        filters, kernel_size: as for `MSGCConv2D`.
        batch_norm: the `BatchNormalization` (or config) after the layer,
            folded into its kernel, or None.
        activation: `"linear"`, `"relu"` or `"relu6"`, applied before the
            output is rounded.
        momentum: the ranges' moving-average momentum.
        fixed_ranges: None (ranges learned in training), or the ranges the
            exports convert: `{rounding point: [min, max], or None}` for
            every point (`frozen_copy` makes them).
        round_activations: with `fixed_ranges`, whether to round to them
            (False: float activations, the biases still on the int8 files'
            grid: the float files of a QAT run).
        emit_range: also return the output's range, `[outputs, gates,
            (min, max)]`, for the convolutions that read it.
        **kwargs: `MSGCConv2D`'s other arguments (its `implementation` is
            always `"masked"`).

    Example:

    >>> import keras, numpy as np
    >>> from keras_igc.quantization import QuantizeAwareMSGCConv2D
    >>> layer = QuantizeAwareMSGCConv2D(
    ...     8, 3, heads=2, batch_norm=keras.layers.BatchNormalization(),
    ...     activation="relu")
    >>> x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
    >>> outputs, gates = layer(x, training=True)
    >>> tuple(outputs.shape), tuple(gates.shape)
    ((2, 8, 8, 8), (2, 2, 4))
    """

    def __init__(self, filters, kernel_size, batch_norm=None, activation="linear",
                 momentum=0.99, fixed_ranges=None, round_activations=True,
                 emit_range=False, **kwargs):  # fmt: skip
        kwargs["implementation"] = "masked"
        super().__init__(filters, kernel_size, **kwargs)
        if activation not in ("linear", "relu", "relu6"):
            raise ValueError(
                f"QuantizeAwareMSGCConv2D `activation` must be 'linear', 'relu' or "
                f"'relu6' (what int8 kernels fuse). Received: "
                f"activation={activation!r}."
            )
        if isinstance(batch_norm, dict):
            batch_norm = keras.saving.deserialize_keras_object(batch_norm)
        batch_norm_folding.check(batch_norm, "QuantizeAwareMSGCConv2D")
        self.batch_norm = batch_norm
        self.activation = activation
        self.momentum = momentum
        points = ROUNDING_POINTS + (ATTENTION_POINTS if self.attention else ())
        if fixed_ranges is not None and set(fixed_ranges) != set(points):
            raise ValueError(
                f"QuantizeAwareMSGCConv2D `fixed_ranges` needs one entry for each "
                f"of {points}. Received keys: {sorted(fixed_ranges)}."
            )
        self.fixed_ranges = fixed_ranges
        self.round_activations = bool(round_activations)
        self.emit_range = bool(emit_range)
        self.quantizers = {point: self._quantizer(point) for point in points}

    def _quantizer(self, point):
        name = f"{point}_quantizer"
        if self.fixed_ranges is not None:
            rounding = self.fixed_ranges[point]
            if rounding is None or not self.round_activations:
                return keras.layers.Identity(name=name, dtype="float32")
            return ActivationQuantizer(fixed_range=rounding, name=name)
        if point == "masks" and not self.attention:
            return ActivationQuantizer(fixed_range=GATE_RANGE, name=name)
        return ActivationQuantizer(self.momentum, name=name, dtype="float32")

    def build(self, input_shape):
        super().build(input_shape)
        x_shape, _ = split_inputs(input_shape)
        output_shape = self.conv.compute_output_shape(
            (*x_shape[:-1], self.heads * x_shape[-1])
        )
        if self.batch_norm is not None and not self.batch_norm.built:
            self.batch_norm.build(output_shape)
        # One switch for every BatchNorm it folds (the generators' too).
        self.batch_norm_frozen = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="batch_norm_frozen",
            dtype="float32",
        )  # fmt: skip
        for quantizer in self.quantizers.values():
            quantizer.build(None)

    def call(self, inputs, training=None):
        x, source = split_inputs(inputs)
        pooled = self._round("pool", ops.mean(source, axis=(1, 2)), training)
        logits = self._generator(self.mask_generator, pooled, "hidden", training)
        logits = self._round("logits", logits, training)
        blocks = self.input_channels // self.granularity
        gates = self.gate(
            ops.reshape(logits, (-1, self.heads, blocks)), training=training
        )
        if self.granularity > 1:
            gates = ops.repeat(gates, self.granularity, axis=-1)
        masks = gates
        if self.attention:
            attention = self._generator(
                self.attention_generator, pooled, "attention_hidden", training
            )
            attention = self._round("attention", attention, training)
            masks = gates * ops.reshape(
                attention, (-1, self.heads, self.input_channels)
            )
        masks = self._round("masks", masks, training)
        copies = self._round("copies", self.masked_copies(x, masks), training)
        outputs = fused_activation(self._convolution(copies, training), self.activation)
        outputs = self._round("output", outputs, training)
        gates = ops.cast(gates, "float32")
        if self.emit_range:
            return [outputs, gates, self._range("output")]
        return [outputs, gates]

    def _round(self, point, x, training):
        return self.quantizers[point](x, training=training)

    def _range(self, point):
        """The `(min, max)` tensor of a rounding point ([0, 0]: none yet)."""
        if self.fixed_ranges is not None:
            rounding = self.fixed_ranges[point]
            return ops.convert_to_tensor(rounding or (0.0, 0.0), "float32")
        return self.quantizers[point].range_tensor()

    def _on_grid(self, bias, input_point, kernel):
        """`bias` on the int32 grid of the int8 files: the step of
        `input_point` times each channel's step of `kernel` (inference, and
        training once the BatchNorms are frozen)."""
        return quantize_bias(bias, self._range(input_point), weight_scale(kernel))

    def _generator(self, generator, pooled, hidden_point, training):
        """A `MaskGenerator` on the rounded pooled source: the squeeze with
        its BatchNorm folded, ReLU, rounded; the expansion, not yet rounded."""
        norm, frozen = generator.norm, self.batch_norm_frozen
        factor = batch_norm_folding.scale(norm)
        kernel = quantize_weights(generator.reduce.kernel * factor)
        hidden = batch_norm_folding.normalize(
            norm, frozen, ops.matmul(pooled, kernel), factor, None, training,
            lambda bias: self._on_grid(bias, "pool", kernel),
        )  # fmt: skip
        hidden = self._round(hidden_point, ops.relu(hidden), training)
        expand = generator.expand
        kernel = quantize_weights(expand.kernel)
        return batch_norm_folding.with_bias(
            ops.matmul(hidden, kernel), expand.bias, training,
            lambda bias: self._on_grid(bias, hidden_point, kernel),
        )  # fmt: skip

    def _convolution(self, copies, training):
        """The grouped convolution with the BatchNorm after it folded in."""
        bn, kernel = self.batch_norm, self.conv.kernel
        bias = self.conv.bias if self.use_bias else None
        factor = batch_norm_folding.scale(bn)
        kernel = quantize_weights(kernel if bn is None else kernel * factor)
        outputs = self.conv.convolution_op(copies, kernel)

        def on_grid(bias):
            return self._on_grid(bias, "copies", kernel)

        if bn is None:
            return batch_norm_folding.with_bias(outputs, bias, training, on_grid)
        return batch_norm_folding.normalize(
            bn, self.batch_norm_frozen, outputs, factor, bias, training, on_grid
        )

    def ranges(self):
        """`{rounding point: (min, max) or None}`: the ranges it rounds to
        now (None: a point that never saw a training batch)."""
        return {
            point: getattr(quantizer, "range", None)
            for point, quantizer in self.quantizers.items()
        }

    def frozen_copy(self, round_activations=True):
        """An unbuilt copy whose ranges are fixed at this layer's (what the
        exporters convert), or with `round_activations=False` float
        activations with the rounded kernels and biases (the float files of
        a QAT run); `load_weights_of(self)` once it is built."""
        config = self.get_config()
        config["fixed_ranges"] = {
            point: None if rounding is None else list(rounding)
            for point, rounding in self.ranges().items()
        }
        config["round_activations"] = round_activations
        config["emit_range"] = False  # the ranges are in its weights
        return type(self).from_config(config)

    def load_weights_of(self, layer):
        """Take the weights of `layer`, a built float `MSGCConv2D` or
        quantization-aware one (the ranges are not weights it takes)."""
        pairs = [(self.conv, layer.conv), (self.mask_generator, layer.mask_generator)]
        if self.attention:
            pairs.append((self.attention_generator, layer.attention_generator))
        if isinstance(layer, QuantizeAwareMSGCConv2D):
            self.batch_norm_frozen.assign(layer.batch_norm_frozen)
            if self.batch_norm is not None:
                pairs.append((self.batch_norm, layer.batch_norm))
        for mine, theirs in pairs:
            mine.set_weights(theirs.get_weights())

    def compute_output_shape(self, input_shape):
        shapes = super().compute_output_shape(input_shape)
        return [*shapes, (2,)] if self.emit_range else shapes

    def compute_output_spec(self, inputs, training=None):
        specs = super().compute_output_spec(inputs, training)
        if self.emit_range:
            specs.append(keras.KerasTensor((2,), dtype="float32"))
        return specs

    def get_config(self):
        return {
            **super().get_config(),
            **batch_norm_folding.fused_config(
                self.batch_norm, self.activation, self.momentum
            ),
            "fixed_ranges": self.fixed_ranges,
            "round_activations": self.round_activations,
            "emit_range": self.emit_range,
        }
