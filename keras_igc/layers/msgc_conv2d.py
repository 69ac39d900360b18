import keras
from keras import ops

from keras_igc.layers.group_conv2d import GroupConv2D
from keras_igc.layers.gumbel_sigmoid_gate import GumbelSigmoidGate
from keras_igc.layers.mask_generator import MaskGenerator
from keras_igc.validation import positive_int


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

    Args:
        filters: output channels, a multiple of `heads`.
        kernel_size, strides, padding, use_bias: as for `Conv2D`.
        heads: groups of the convolution (MSGC: 4).
        squeeze: the generators' hidden reduction (MSGC: 4 basic blocks and
            MobileNetV2, 8 bottlenecks).
        attention: add the attention generator.
        temperature: of the gate (MSGC: 2/3).
        seed: seed of the gate's noise.
        kernel_initializer, bias_initializer: of the convolution.
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
        kernel_initializer="he_normal",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = positive_int(filters, "filters", "MSGCConv2D")
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
            dtype=self.dtype_policy,
        )
        self.gate = GumbelSigmoidGate(
            temperature, seed=seed, name="gate", dtype=self.dtype_policy
        )
        self.mask_generator = None  # needs the input width: made in build
        self.attention_generator = None
        self.input_channels = None
        self.output_size = None

    def build(self, input_shape):
        x_shape, source_shape = _split(input_shape)
        if len(x_shape) != 4 or x_shape[-1] is None:
            raise ValueError(
                f"MSGCConv2D expects a 4D channels_last input with known channels. "
                f"Received input_shape={tuple(x_shape)}."
            )
        self.input_channels = channels = x_shape[-1]
        self.mask_generator = MaskGenerator(
            self.heads, channels, self.squeeze, name="mask_generator",
            dtype=self.dtype_policy,
        )  # fmt: skip
        self.mask_generator.build(source_shape)
        if self.attention:
            self.attention_generator = MaskGenerator(
                self.heads, channels, self.squeeze, attention=True,
                name="attention_generator", dtype=self.dtype_policy,
            )  # fmt: skip
            self.attention_generator.build(source_shape)
        copies = (*x_shape[:-1], self.heads * channels)
        self.conv.build(copies)
        self.output_size = tuple(self.conv.compute_output_shape(copies)[1:3])
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
        _, source = _split(inputs)
        return self._gates_and_masks(source, training)[1]

    def _gates_and_masks(self, source, training):
        """`(0/1 gates, gates scaled by the attention)` from the mask source."""
        gates = self.gate(
            self.mask_generator(source, training=training), training=training
        )
        if not self.attention:
            return gates, gates
        return gates, gates * self.attention_generator(source, training=training)

    def call(self, inputs, training=None):
        x, source = _split(inputs)
        gates, masks = self._gates_and_masks(source, training)
        masks = ops.cast(masks, x.dtype)
        batch, height, width, channels = ops.shape(x)
        copies = ops.expand_dims(x, 3) * ops.reshape(
            masks, (-1, 1, 1, self.heads, channels)
        )
        outputs = self.conv(
            ops.reshape(copies, (batch, height, width, self.heads * channels))
        )
        return [outputs, ops.cast(gates, "float32")]

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
        x_shape, _ = _split(input_shape)
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
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


def _is_pair(inputs):
    return (
        isinstance(inputs, list | tuple)
        and len(inputs) == 2
        and not isinstance(inputs[0], int | type(None))
    )


def _split(inputs):
    """`x` or `[x, source]` -> `(x, source)`; the source defaults to `x`."""
    if _is_pair(inputs):
        return inputs[0], inputs[1]
    return inputs, inputs
