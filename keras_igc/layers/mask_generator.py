import keras
from keras import ops

from keras_igc.layers.int8_kernel import (
    check_quantized,
    quantized_paths,
    sublayer_policy,
)
from keras_igc.validation import positive_int

# The Dense layers `model.quantize("int8")` reaches (config `quantized`).
QUANTIZABLE = ("reduce", "expand")


def kaiming_fan_out():
    """PyTorch's `kaiming_normal_(mode="fan_out", nonlinearity="relu")`: the
    MSGC release initialises every convolution with it, the generators'
    1x1 layers included."""
    return keras.initializers.VarianceScaling(
        2.0, mode="fan_out", distribution="untruncated_normal"
    )


@keras.saving.register_keras_serializable(package="keras_igc")
class MaskGenerator(keras.layers.Layer):
    """Per-sample channel-mask logits for the heads of an MSGC convolution.

    Global average pooling of the source feature map, a 1x1 squeeze to
    `source_channels // squeeze` (no bias), BatchNorm, ReLU and a 1x1
    expansion to `heads * channels` logits, returned as
    `(batch, heads, channels)`: the MSGC release's `MaskGen` (`AttGen` with
    `attention=True`), initialised as it initialises them. The last bias
    starts at `initial_bias` (MSGC: 2.0), so the gates start open and the
    network starts as the dense one. With `attention=True` it is MSGC's
    attention generator instead: the last layer starts at weight 0 and bias
    1 and its real-valued output scales the masks.

    Args:
        heads: number of heads (groups) of the convolution it feeds.
        channels: channels each head masks (the convolution's inputs).
        squeeze: reduction of the hidden layer (MSGC: 4 in basic blocks, 8 in
            bottlenecks).
        attention: build the attention generator.
        initial_bias: initial logit of the mask generator.
        quantized: None, or the Dense layers that `model.quantize("int8")`
            stored as int8 (`{"reduce": "int8", "expand": "int8"}`):
            `get_config` sets it, so that a saved quantized generator loads
            as one.
        **kwargs: base layer keyword arguments.

    Example:

    >>> import keras, keras_igc
    >>> generator = keras_igc.MaskGenerator(heads=4, channels=16)
    >>> tuple(generator(keras.ops.ones((2, 8, 8, 32))).shape)
    (2, 4, 16)
    """

    def __init__(
        self, heads, channels, squeeze=4, attention=False, initial_bias=2.0,
        quantized=None, **kwargs,
    ):  # fmt: skip
        super().__init__(**kwargs)
        self.heads = positive_int(heads, "heads", "MaskGenerator")
        self.channels = positive_int(channels, "channels", "MaskGenerator")
        self.squeeze = positive_int(squeeze, "squeeze", "MaskGenerator")
        self.attention = bool(attention)
        self.initial_bias = float(initial_bias)
        self.quantized = check_quantized(quantized, QUANTIZABLE, "MaskGenerator")
        self.pool = keras.layers.GlobalAveragePooling2D(
            name="pool", dtype=self.dtype_policy
        )
        self.reduce = None  # needs the source width: made in build
        # PyTorch's BatchNorm2d, as in the MSGC release: momentum 0.1 there is
        # 0.9 here (Keras' 0.99 lets the statistics lag the fast-moving
        # masks), epsilon 1e-5.
        self.norm = keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, name="norm", dtype=self.dtype_policy
        )
        self.expand = keras.layers.Dense(
            self.heads * self.channels,
            kernel_initializer="zeros" if self.attention else kaiming_fan_out(),
            bias_initializer=keras.initializers.Constant(
                1.0 if self.attention else self.initial_bias
            ),
            name="expand",
            dtype=sublayer_policy(self.dtype_policy, self.quantized, "expand"),
        )

    def hidden_units(self, source_channels):
        return max(1, source_channels // self.squeeze)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"MaskGenerator expects a 4D channels_last source with known "
                f"channels. Received input_shape={tuple(input_shape)}."
            )
        hidden = self.hidden_units(input_shape[-1])
        self.input_spec = keras.InputSpec(ndim=4, axes={-1: input_shape[-1]})
        self.reduce = keras.layers.Dense(
            hidden,
            use_bias=False,
            kernel_initializer=kaiming_fan_out(),
            name="reduce",
            dtype=sublayer_policy(self.dtype_policy, self.quantized, "reduce"),
        )
        self.reduce.build((input_shape[0], input_shape[-1]))
        self.norm.build((input_shape[0], hidden))
        self.expand.build((input_shape[0], hidden))

    def call(self, source, training=None):
        x = self.reduce(self.pool(source))
        x = ops.relu(self.norm(x, training=training))
        return ops.reshape(self.expand(x), (-1, self.heads, self.channels))

    def macs(self, source_channels):
        """Multiply-accumulates per sample as the MSGC release counts them:
        the two 1x1 layers and the BatchNorm (pooling not counted)."""
        hidden = self.hidden_units(source_channels)
        return (source_channels + 1) * hidden + hidden * self.heads * self.channels

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.heads, self.channels)

    def get_config(self):
        return {
            **super().get_config(),
            "heads": self.heads,
            "channels": self.channels,
            "squeeze": self.squeeze,
            "attention": self.attention,
            "initial_bias": self.initial_bias,
        } | self._quantized_config()

    def _quantized_config(self):
        quantized = quantized_paths({"reduce": self.reduce, "expand": self.expand})
        return {"quantized": quantized} if quantized else {}
