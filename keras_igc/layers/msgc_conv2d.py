import re

import keras
from keras import ops

from keras_igc import forms, validation
from keras_igc import ops as igc_ops
from keras_igc.layers.group_conv2d import GroupConv2D
from keras_igc.layers.gumbel_sigmoid_gate import GumbelSigmoidGate
from keras_igc.layers.int8_kernel import (
    check_quantized,
    quantized_paths,
    sublayer_policy,
)
from keras_igc.layers.mask_generator import QUANTIZABLE as GENERATOR_INT8
from keras_igc.layers.mask_generator import MaskGenerator
from keras_igc.validation import positive_int

# The gate sublayer's name. Exported graphs name its decisions after it: both
# converters call the comparison of the mask logits with the threshold
# `.../<layer scope>/gate[_N]/GreaterEqual`, which `GATE_DECISION` finds (the
# export's 8-bit report and flip count read it).
GATE_NAME = "gate"
GATE_DECISION = re.compile(rf"([^/;]+)/{GATE_NAME}(_\d+)?/GreaterEqual(:0|;|$)")
# The generator sublayers (each records its own int8 Dense layers).
GENERATORS = ("mask_generator", "attention_generator")


@keras.saving.register_keras_serializable(package="keras_igc")
class MSGCConv2D(keras.layers.Layer):
    """Middle spectrum grouped convolution (MSGC, Su et al., TNNLS 2024).

    A grouped convolution with `heads` groups in which every head learns, per
    sample, which input channels it reads. Its input is `heads` copies of the
    feature map, copy `h` multiplied by head `h`'s binary channel mask; head
    `h` convolves its copy into `filters / heads` outputs. The kernel has the
    shape of the dense convolution it replaces, `(kh, kw, C_in, filters)` (the
    release's `(filters, C_in, kh, kw)` transposed), so dense weights load as
    they are, and with every mask open the layer equals that dense
    convolution. `heads=1` is a dense convolution with a per-sample
    input-channel mask (dynamic channel pruning).

    The masks come from a `MaskGenerator` (on the layer's input, or on a
    separate `source` tensor: the release computes all masks of a block from
    the block's input) through a `GumbelSigmoidGate`: hard 0/1 with
    straight-through gradients in training, a deterministic threshold at
    inference. With `attention=True` a second generator's real-valued output
    scales the masks.

    The layer returns `[outputs, gates]`: the convolution's output and the
    `(batch, heads, C_in)` gates it used (attention not included), which a
    `keras_igc.MACRegularizer` turns into the network's MACs and MAC loss.
    `dense_macs` is the cost of the dense convolution it replaces.

    Training always computes the masked form (the gates' gradients need
    it). At inference the layer can instead skip what the gates close
    (`implementation`): each head gathers the input channels any sample of
    the batch keeps, with the matching input rows of its kernel, and runs
    that smaller grouped convolution; the masks and attention scale the
    gathered channels. Both forms give the same outputs.

    Args:
        filters: output channels, a multiple of `heads`.
        kernel_size, strides, padding, use_bias: as for `Conv2D`.
        heads: groups of the convolution (MSGC: 4).
        squeeze: the generators' hidden reduction (MSGC: 4 basic blocks and
            MobileNetV2, 8 bottlenecks).
        attention: add the attention generator.
        temperature: of the gate (MSGC: 2/3).
        seed: seed of the gate's noise.
        granularity: channels per gate. `1` (default, the paper's free
            masks): one gate per head and input channel. `g > 1`: each gate
            opens or closes a contiguous block of `g` channels (the input
            channels must be a multiple of `g`), so the gathered form copies
            blocks instead of single channels; attention stays per channel.
        implementation: the inference form. `"masked"`: every head convolves
            a masked copy of the whole input (the training form: MACs of the
            dense convolution). `"gather"`: every head convolves only the
            channels the batch keeps (TensorFlow and PyTorch; JAX compiles
            for static shapes and refuses it). `"auto"` (default):
            per layer, the form measured fastest on this backend and device
            (`keras_igc.forms`, kind `"msgc"`): several heads fold each
            sample's masks into its own kernel (`"scaled_kernel"`: no
            copies; one batched product for a 1x1 kernel, a single
            convolution for a spatial one at batch 1); one head with a
            spatial kernel gathers when the batch keeps few enough channels
            (`gather_limit`); the rest mask. `"masked"` on GPUs and in
            exports for converters. After `build`, `active_implementation`
            names the form.
        kernel_initializer, bias_initializer: of the convolution.
        quantized: None, or the layers that `model.quantize("int8")` stored
            as int8: `{"conv": "int8", "mask_generator": {"reduce": "int8",
            "expand": "int8"}, ...}` (`keras_igc.layers.int8_kernel`):
            `get_config` sets it, so that a saved quantized layer loads as
            one.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: the feature map, or `[feature_map, source]` to compute the
            masks from `source` (e.g. a block's input).
        training: training mode (noisy hard gates, BatchNorm statistics).

    Example:

    >>> import keras, keras_igc
    >>> layer = keras_igc.MSGCConv2D(32, 3, heads=4)
    >>> outputs, gates = layer(keras.ops.ones((2, 8, 8, 16)))
    >>> tuple(outputs.shape), tuple(gates.shape)
    ((2, 8, 8, 32), (2, 4, 16))
    >>> layer.dense_macs  # 3 * 3 * 16 * 32 * 8 * 8
    294912
    """

    def __init__(
        self,
        filters,
        kernel_size,
        heads=4,
        strides=1,
        padding="same",
        use_bias=False,
        squeeze=4,
        attention=False,
        temperature=2 / 3,
        seed=None,
        granularity=1,
        implementation="auto",
        kernel_initializer="he_normal",
        bias_initializer="zeros",
        quantized=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = positive_int(filters, "filters", "MSGCConv2D")
        quantized = dict(quantized or {})
        # The generators check their own entries.
        self.generators_quantized = {
            name: check_quantized(quantized.pop(name, None), GENERATOR_INT8, name)
            for name in GENERATORS
        }
        self.quantized = check_quantized(quantized, ("conv",), "MSGCConv2D")
        self.heads = positive_int(heads, "heads", "MSGCConv2D")
        if self.filters % self.heads:
            raise ValueError(
                f"MSGCConv2D needs `filters` divisible by `heads` (each head "
                f"writes filters / heads channels). Received filters={filters}, "
                f"heads={heads}; choose heads among the divisors of {filters}."
            )
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.use_bias = bool(use_bias)
        self.squeeze = positive_int(squeeze, "squeeze", "MSGCConv2D")
        self.attention = bool(attention)
        self.temperature = temperature
        self.seed = seed
        self.granularity = positive_int(granularity, "granularity", "MSGCConv2D")
        validation.implementation(
            implementation, self.strides, "MSGCConv2D", forms.OVERRIDES["msgc"]
        )
        if implementation == "gather" and keras.backend.backend() == "jax":
            raise ValueError(
                "MSGCConv2D implementation='gather' needs shapes that depend on "
                "the gates, which JAX's compiled functions cannot have. Use "
                "implementation='auto' (the masked form on JAX) or 'masked', "
                "or the TensorFlow or PyTorch backend."
            )
        self.implementation = implementation
        self.execution_form = None
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.conv = GroupConv2D(
            self.filters,
            kernel_size,
            strides=strides,
            padding=padding,
            groups=self.heads,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            name="conv",
            dtype=sublayer_policy(self.dtype_policy, self.quantized, "conv"),
        )
        self.gate = GumbelSigmoidGate(
            temperature, seed=seed, name=GATE_NAME, dtype=self.dtype_policy
        )
        self.mask_generator = None  # needs the input width: made in build
        self.attention_generator = None
        self.input_channels = None
        self.output_size = None

    def build(self, input_shape):
        x_shape, source_shape = split_inputs(input_shape)
        if len(x_shape) != 4 or x_shape[-1] is None:
            raise ValueError(
                f"MSGCConv2D expects a 4D channels_last input with known channels. "
                f"Received input_shape={tuple(x_shape)}."
            )
        self.input_channels = channels = x_shape[-1]
        if channels % self.granularity:
            raise ValueError(
                f"MSGCConv2D {self.name!r} with granularity={self.granularity} "
                f"gates blocks of {self.granularity} input channels, so the "
                f"input channels must be a multiple of it. Received {channels} "
                f"input channels; choose a granularity that divides {channels}, "
                f"or 1."
            )
        self.mask_generator = MaskGenerator(
            self.heads, channels // self.granularity, self.squeeze,
            quantized=self.generators_quantized["mask_generator"],
            name="mask_generator", dtype=self.dtype_policy,
        )  # fmt: skip
        self.mask_generator.build(source_shape)
        if self.attention:
            self.attention_generator = MaskGenerator(
                self.heads, channels, self.squeeze, attention=True,
                quantized=self.generators_quantized["attention_generator"],
                name="attention_generator", dtype=self.dtype_policy,
            )  # fmt: skip
            self.attention_generator.build(source_shape)
        copies = (*x_shape[:-1], self.heads * channels)
        self.conv.build(copies)
        self.output_size = tuple(self.conv.compute_output_shape(copies)[1:3])
        self.set_execution_form(forms.choose(self, "keras"))
        self.input_spec = (
            [
                keras.InputSpec(ndim=4, axes={-1: channels}),
                keras.InputSpec(ndim=4, axes={-1: source_shape[-1]}),
            ]
            if _is_pair(input_shape)
            else keras.InputSpec(ndim=4, axes={-1: channels})
        )

    @property
    def kernel(self):
        """The kernel, shaped like the dense one: `(kh, kw, C_in, filters)`."""
        return self.conv.kernel

    def masks(self, inputs, training=False):
        """The heads' channel masks, `(batch, heads, C_in)` (attention included)."""
        _, source = split_inputs(inputs)
        return self._gates_and_masks(source, training)[1]

    def _gates_and_masks(self, source, training):
        """`(0/1 gates, gates scaled by the attention)` from the mask source."""
        gates = self.gate(
            self.mask_generator(source, training=training), training=training
        )
        if self.granularity > 1:  # one gate per block: every channel of it
            gates = ops.repeat(gates, self.granularity, axis=-1)
        if not self.attention:
            return gates, gates
        return gates, gates * self.attention_generator(source, training=training)

    def call(self, inputs, training=None):
        x, source = split_inputs(inputs)
        gates, masks = self._gates_and_masks(source, training)
        masks = ops.cast(masks, x.dtype)
        if training or self.active_implementation == "masked":
            outputs = self._masked(x, masks)
        elif self.active_implementation == "scaled_kernel":
            outputs = self._scaled_kernel(x, masks)
        else:
            outputs = self._skipping(x, gates, masks)
        return [outputs, ops.cast(gates, "float32")]

    def set_execution_form(self, choice):
        """Run inference as `choice` (a `keras_igc.forms.Choice` of kind
        `"msgc"`) says from the next trace on (`active_implementation`);
        `"auto"` gathers up to `choice.gather_limit` kept channels. `build`
        sets the `"keras"` form, export each runtime's, and
        `forms.forced("msgc", form, ...)` any."""
        self.execution_form = forms.check_kind(choice, "msgc", self)
        # XLA compiles static shapes only: the gathered form runs without it.
        self.supports_jit = choice.form in ("masked", "scaled_kernel")

    @property
    def active_implementation(self):
        """The inference form set (`execution_form.form`), None before
        `build`."""
        return None if self.execution_form is None else self.execution_form.form

    @property
    def gather_limit(self):
        """The `"auto"` form's most kept channels to gather
        (`execution_form.gather_limit`)."""
        return None if self.execution_form is None else self.execution_form.gather_limit

    def _masked(self, x, masks):
        return self.conv(self.masked_copies(x, masks))

    def masked_copies(self, x, masks):
        """The grouped convolution's input in the masked form: `heads`
        copies of `x`, copy `h` multiplied by head `h`'s masks
        `(batch, heads, C_in)`, side by side on the channel axis."""
        pixels, channels = igc_ops.batch_free_shape(x)[:3], self.input_channels
        copies = ops.expand_dims(x, 3) * ops.reshape(
            masks, (-1, 1, 1, self.heads, channels)
        )
        return ops.reshape(copies, (*pixels, self.heads * channels))

    def _scaled_kernel(self, x, masks):
        """The convolution with each sample's own kernel,
        `kernel[..., c, f] * masks[b, head(f), c]` for sample `b`: one
        batched product for a 1x1 kernel; for a spatial one a single
        convolution when the batch is one sample, else the masked form."""
        if self.conv.kernel_size != (1, 1):
            if x.shape[0] is not None:  # traced for one batch size: no branch
                if x.shape[0] == 1:
                    return self._single_sample_kernel(x, masks)
                return self._masked(x, masks)
            return ops.cond(
                ops.shape(x)[0] == 1,
                lambda: self._single_sample_kernel(x, masks),
                lambda: self._masked(x, masks),
            )
        heads, channels = self.heads, self.input_channels
        sh, sw = self.conv.strides
        x = x[:, ::sh, ::sw, :]  # a strided 1x1 reads every s-th pixel
        batch, height, width = igc_ops.batch_free_shape(x)[:3]
        kernel = ops.reshape(
            ops.cast(self.conv.kernel, x.dtype), (1, channels, heads, -1)
        )
        kernel = kernel * ops.expand_dims(ops.transpose(masks, (0, 2, 1)), -1)
        y = ops.matmul(
            ops.reshape(x, (batch, height * width, channels)),
            ops.reshape(kernel, (-1, channels, self.filters)),
        )
        return self._add_bias(ops.reshape(y, (batch, height, width, self.filters)))

    def _single_sample_kernel(self, x, masks):
        """A batch of one: its masks folded into one kernel, one convolution."""
        kh, kw = self.conv.kernel_size
        kernel = ops.reshape(
            ops.cast(self.conv.kernel, x.dtype),
            (kh, kw, self.input_channels, self.heads, -1),
        )
        scale = ops.reshape(ops.transpose(masks[0]), (1, 1, -1, self.heads, 1))
        kernel = ops.reshape(kernel * scale, (kh, kw, self.input_channels, -1))
        y = ops.conv(
            x, kernel, strides=self.conv.strides, padding=self.conv.padding,
            dilation_rate=self.conv.dilation_rate,
        )  # fmt: skip
        return self._add_bias(y)

    def _skipping(self, x, gates, masks):
        """The gathered form where the batch keeps at most `gather_limit`
        channels in every head, else the masked one."""
        kept = ops.any(ops.cast(gates, "bool"), axis=0)  # (heads, C): the batch's
        widest = ops.max(ops.sum(ops.cast(kept, "int32"), axis=-1))
        if self.gather_limit >= self.input_channels:
            return self._gathered(x, kept, widest, masks)
        return ops.cond(
            widest <= self.gather_limit,
            lambda: self._gathered(x, kept, widest, masks),
            lambda: self._masked(x, masks),
        )

    def _gathered(self, x, kept, widest, masks):
        """Each head convolves the `widest` channels it keeps first.

        Heads that keep fewer pad with closed channels (their masks are 0 in
        every sample), so all heads have one width and run as one grouped
        convolution: `widest / C_in` of the masked form's MACs. The masks and
        attention scale the gathered channels rather than the kernel, which
        could hold per-sample scales only as one kernel per sample. With
        `granularity` g, the gates are constant on blocks of g channels:
        whole blocks are gathered.
        """
        heads, g = self.heads, self.granularity
        blocks = ops.maximum(widest // g, 1)  # a batch that closes everything
        # Kept blocks first (argsort of 0 for kept, 1 for closed).
        closed = ops.cast(ops.logical_not(kept[:, ::g]), "int32")
        order = ops.cast(ops.argsort(closed, axis=-1)[:, :blocks], "int32")
        channels = ops.reshape(
            ops.expand_dims(order * g, -1) + ops.arange(g, dtype="int32"),
            (heads, -1),
        )  # (heads, blocks * g): the blocks' channels
        scale = ops.take_along_axis(masks, ops.expand_dims(channels, 0), axis=2)
        picked = _pick_channels(
            x, ops.reshape(order, (-1,)), ops.reshape(scale, (ops.shape(x)[0], -1)), g
        )
        kernel = _gather_kernel_rows(
            ops.cast(self.conv.kernel, x.dtype), channels, heads
        )
        y = igc_ops.grouped_conv_native(
            picked, kernel, heads, strides=self.conv.strides,
            padding=self.conv.padding, dilation_rate=self.conv.dilation_rate,
        )  # fmt: skip
        return self._add_bias(y)

    def _add_bias(self, y):
        return y + ops.cast(self.conv.bias, y.dtype) if self.use_bias else y

    def dense_macs_at(self, output_size):
        """MACs of the dense convolution it replaces, at an output size."""
        kh, kw = self.conv.kernel_size
        height, width = output_size
        return kh * kw * self.input_channels * self.filters * height * width

    @property
    def dense_macs(self):
        """MACs of the dense convolution it replaces, at its built size."""
        if self.output_size is None or None in self.output_size:
            raise ValueError(
                f"MSGCConv2D {self.name!r} needs a known output size to count "
                f"MACs; build it on a fixed spatial input shape or use "
                f"dense_macs_at((height, width))."
            )
        return self.dense_macs_at(self.output_size)

    def compute_output_shape(self, input_shape):
        x_shape, _ = split_inputs(input_shape)
        copies = (*x_shape[:-1], self.heads * x_shape[-1])
        return [
            self.conv.compute_output_shape(copies),
            (x_shape[0], self.heads, x_shape[-1]),
        ]

    def compute_output_spec(self, inputs, training=None):
        shapes = self.compute_output_shape(
            [tuple(t.shape) for t in inputs]
            if isinstance(inputs, list | tuple)
            else tuple(inputs.shape)
        )
        # The gates feed MAC counts that reach billions: float32 whatever the
        # compute dtype.
        return [
            keras.KerasTensor(shapes[0], dtype=self.compute_dtype),
            keras.KerasTensor(shapes[1], dtype="float32"),
        ]

    def execution_geometry(self):
        """`(kind, forms.Geometry, implementation)`: what `keras_igc.forms`
        rules read of this layer."""
        geometry = forms.Geometry(
            group_inputs=self.input_channels, kernel_size=self.conv.kernel_size,
            heads=self.heads,
        )  # fmt: skip
        return "msgc", geometry, self.implementation

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "heads": self.heads,
            "strides": self.strides,
            "padding": self.padding,
            "use_bias": self.use_bias,
            "squeeze": self.squeeze,
            "attention": self.attention,
            "temperature": self.temperature,
            "seed": self.seed,
            "granularity": self.granularity,
            "implementation": self.implementation,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        } | self._quantized_config()

    def _quantized_config(self):
        quantized = quantized_paths({"conv": self.conv})
        for name in GENERATORS:
            generator = getattr(self, name)
            inner = {} if generator is None else generator.get_config().get("quantized")
            if inner:
                quantized[name] = inner
        return {"quantized": quantized} if quantized else {}


# From this many pixels, selecting channels by a product with a scaled one-hot
# matrix (one GEMM) beats gathering them one by one along the channel axis
# (benchmarks/msgc_latency.py --profile; TensorFlow on CPU).
ONE_HOT_PIXELS = 28 * 28


def _pick_channels(x, index, scale, granularity=1):
    """`x[..., channels] * scale`, `scale` of shape `(batch, len(channels))`,
    where `channels` are the blocks `index` of `granularity` channels.

    Exact either way: each output is one input times its scale (the other
    terms of the product are exact zeros).
    """
    batch, height, width, channels = ops.shape(x)
    if granularity > 1:  # whole blocks: a gather of contiguous runs
        blocks = ops.reshape(x, (batch, height, width, -1, granularity))
        picked = ops.reshape(
            ops.take(blocks, index, axis=3), (batch, height, width, -1)
        )
        return picked * ops.reshape(scale, (batch, 1, 1, -1))
    if None not in x.shape[1:3] and x.shape[1] * x.shape[2] >= ONE_HOT_PIXELS:
        selection = ops.one_hot(index, channels, axis=0, dtype=x.dtype)  # (C, n)
        selection = ops.expand_dims(selection, 0) * ops.expand_dims(scale, 1)
        picked = ops.matmul(
            ops.reshape(x, (batch, height * width, channels)), selection
        )
        return ops.reshape(picked, (batch, height, width, -1))
    return ops.take(x, index, axis=3) * ops.reshape(scale, (batch, 1, 1, -1))


def _gather_kernel_rows(kernel, order, heads):
    """Head `h`'s kernel rows `order[h]`, as a grouped kernel of `heads` groups.

    The kernel `(kh, kw, C, heads * f)` viewed as rows of `f` outputs indexed
    `(tap, channel, head)`: one gather of contiguous rows, no transpose.
    """
    kh, kw, channels, filters = kernel.shape
    taps, f = kh * kw, filters // heads
    width = ops.shape(order)[1]
    rows = (
        ops.reshape(ops.arange(taps) * (channels * heads), (taps, 1, 1))
        + ops.expand_dims(ops.transpose(order) * heads, 0)
        + ops.reshape(ops.arange(heads), (1, 1, heads))
    )  # (tap, i, head)
    picked = ops.take(
        ops.reshape(kernel, (taps * channels * heads, f)), ops.reshape(rows, (-1,)),
        axis=0,
    )  # fmt: skip
    return ops.reshape(picked, (kh, kw, width, filters))


def _is_pair(inputs):
    return (
        isinstance(inputs, list | tuple)
        and len(inputs) == 2
        and not isinstance(inputs[0], int | type(None))
    )


def split_inputs(inputs):
    """`x` or `[x, source]` -> `(x, source)`; the source defaults to `x`."""
    if _is_pair(inputs):
        return inputs[0], inputs[1]
    return inputs, inputs
