import keras

from keras_igc import ops as igc_ops
from keras_igc import paths, validation


@keras.saving.register_keras_serializable(package="keras_igc")
class GroupConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D(groups=...)` without the slow XLA path on CPU.

    Same arguments, weights, config and outputs as `Conv2D`; only the way a
    grouped convolution is computed changes. On the TensorFlow backend Keras
    runs every grouped convolution through an XLA-compiled function, which is
    very slow on CPU and ends up inside exported SavedModels. This layer
    takes the path `keras_igc.paths.select_path` picks
    (`active_implementation` names it after `build`): the backend's own
    grouped kernel where it is fast (oneDNN, cuDNN; on TensorFlow called
    without XLA), else exact dense, depthwise or sliced convolutions. The IGC
    networks use it for their grouped shortcut projections.

    Only `data_format="channels_last"` takes the alternative paths; anything
    else behaves exactly like `Conv2D`.

    Args:
        implementation: `"auto"` (the default: `paths.select_path`'s pick), or
            one of `keras_igc.paths.PATHS` for every call. Saved in the config
            only when it is not `"auto"`, so that the default config is
            `Conv2D`'s. Export sets it per runtime (`keras_igc.export`).
        *args, **kwargs: `keras.layers.Conv2D`'s.

    Example:

    >>> import keras, keras_igc
    >>> layer = keras_igc.GroupConv2D(64, 1, groups=4, use_bias=False)
    >>> tuple(layer(keras.ops.ones((1, 8, 8, 32))).shape)
    (1, 8, 8, 64)
    """

    def __init__(self, *args, implementation="auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.implementation = validation.implementation(
            implementation, self.strides, "GroupConv2D"
        )
        self._portable = False

    def build(self, input_shape):
        super().build(input_shape)
        # Built for a converter: the grouped path emits the plain graph op.
        self._portable = paths.is_portable()
        channels = input_shape[-1]
        path = "grouped"
        if self.implementation != "auto":
            path = self.implementation
        elif self.groups > 1 and self.data_format == "channels_last":
            path = paths.select_path(
                self.groups,
                channels // self.groups,
                self.filters // self.groups,
                self.kernel_size,
                self.strides,
                dtype=self.compute_dtype,
            )
        self.active_implementation = path

    def convolution_op(self, inputs, kernel):
        if self.groups == 1 or self.data_format != "channels_last":
            return super().convolution_op(inputs, kernel)
        path = getattr(self, "active_implementation", "grouped")
        conv_args = dict(
            strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate
        )
        if path == "grouped" and self._portable:
            conv_args["graph_op"] = True
        return igc_ops.GROUPED_CONVOLUTIONS[path](
            inputs, kernel, self.groups, **conv_args
        )

    def get_config(self):
        config = super().get_config()
        if self.implementation != "auto":
            config["implementation"] = self.implementation
        return config
