import keras

from keras_igc import ops as igc_ops
from keras_igc import paths


@keras.saving.register_keras_serializable(package="keras_igc")
class GroupConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D(groups=...)` without the slow XLA path on CPU.

    Same arguments, weights, config and outputs as `Conv2D`; only the way a
    grouped convolution is computed changes. On the TensorFlow backend Keras
    runs every grouped convolution through an XLA-compiled function, which is
    very slow on CPU and ends up inside exported SavedModels. This layer
    computes it instead with exact dense, depthwise or block-diagonal kernels
    where those are faster (`keras_igc.paths.select_path`;
    `active_implementation` names the path after `build`), and with the
    native grouped convolution on PyTorch and on accelerators. The IGC
    networks use it for their grouped shortcut projections.

    Only `data_format="channels_last"` takes the alternative paths; anything
    else behaves exactly like `Conv2D`.

    Example:

    >>> import keras, keras_igc
    >>> layer = keras_igc.GroupConv2D(64, 1, groups=4, use_bias=False)
    >>> tuple(layer(keras.ops.ones((1, 8, 8, 32))).shape)
    (1, 8, 8, 64)
    """

    def build(self, input_shape):
        super().build(input_shape)
        channels = input_shape[-1]
        path = "grouped"
        if self.groups > 1 and self.data_format == "channels_last":
            path = paths.select_path(
                self.groups,
                channels // self.groups,
                self.filters // self.groups,
                self.kernel_size,
                self.strides,
            )
        self.active_implementation = path

    def convolution_op(self, inputs, kernel):
        path = getattr(self, "active_implementation", "grouped")
        if path == "grouped":
            return super().convolution_op(inputs, kernel)
        return igc_ops.GROUPED_CONVOLUTIONS[path](
            inputs,
            kernel,
            self.groups,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
        )
