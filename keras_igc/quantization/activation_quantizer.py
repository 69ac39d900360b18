import keras
from keras import ops

from keras_igc.quantization.fake_quant import quantize_activations


@keras.saving.register_keras_serializable(package="keras_igc")
class ActivationQuantizer(keras.layers.Layer):
    """Rounds a tensor to the int8 levels its exported twin will hold.

    The range is a moving average of each training batch's minimum and
    maximum (the first batch sets it), the rule TensorFlow Model
    Optimization's QAT follows and the one the exports' calibration
    approximates with its own min and max. Moving averages, not learned
    ranges: at 8 bits a range a few percent wide of the best one costs less
    than a step, the averages follow the ranges while BatchNorm and the
    weights move, and they need no learning rate of their own. Before its
    first training batch the layer passes its input through unchanged, so a
    model that `quantize_aware` just made computes what the float one did.

    Args:
        momentum: the weight of the old range in each update (0.99: about
            the last 100 batches count).
        fixed_range: None, or `(min, max)`: a range that training does not
            move, without variables (what `inference_model` gives the
            exporters: TensorFlow runs it as one `FakeQuantWithMinMaxVars`).
        emit_range: also return the range, `[rounded, (min, max)]`, for the
            convolutions that read the rounded tensor: their int8 bias lies
            on a grid of its step (`quantize_aware` sets it).
        **kwargs: base layer keyword arguments, such as `name`.

    Example:

    >>> import keras, numpy as np, keras_igc.quantization as q
    >>> layer = q.ActivationQuantizer()
    >>> x = np.array([[0.0, 0.31, 0.71, 1.0]], "float32")
    >>> _ = layer(x, training=True)  # sets the range [0, 1]
    >>> y = keras.ops.convert_to_numpy(layer(x))
    >>> (y[0] * 255).round(2).tolist()  # whole steps of 1/255
    [0.0, 79.0, 181.0, 255.0]
    """

    def __init__(self, momentum=0.99, fixed_range=None, emit_range=False, **kwargs):
        super().__init__(**kwargs)
        self.emit_range = bool(emit_range)
        if isinstance(momentum, bool) or not (
            isinstance(momentum, int | float) and 0 <= momentum < 1
        ):
            raise ValueError(
                f"ActivationQuantizer `momentum` must be a number in [0, 1), the "
                f"weight of the old range in each update (e.g. 0.99). Received: "
                f"momentum={momentum!r}."
            )
        self.momentum = float(momentum)
        self.fixed_range = None
        if fixed_range is not None:
            try:
                low, high = (float(v) for v in fixed_range)
            except (TypeError, ValueError):
                low = high = float("nan")
            if not low <= high:  # NaN too
                raise ValueError(
                    f"ActivationQuantizer `fixed_range` must be (min, max) with "
                    f"min <= max. Received: fixed_range={fixed_range!r}."
                )
            self.fixed_range = (low, high)

    def build(self, input_shape):
        if self.fixed_range is not None:
            return

        def scalar(name):
            return self.add_weight(
                shape=(), initializer="zeros", trainable=False, name=name,
                dtype="float32",
            )  # fmt: skip

        self.range_min = scalar("range_min")
        self.range_max = scalar("range_max")
        self.initialized = scalar("initialized")  # 1 after a training batch

    def call(self, inputs, training=False):
        rounded = self._round(inputs, training)
        return [rounded, self.range_tensor()] if self.emit_range else rounded

    def _round(self, inputs, training):
        if self.fixed_range is not None:
            return quantize_activations(inputs, *self.fixed_range)
        if training:
            batch_min = ops.cast(ops.min(inputs), "float32")
            batch_max = ops.cast(ops.max(inputs), "float32")
            # The first batch sets the range; later ones move it.
            keep = self.momentum * self.initialized
            self.range_min.assign(keep * self.range_min + (1 - keep) * batch_min)
            self.range_max.assign(keep * self.range_max + (1 - keep) * batch_max)
            self.initialized.assign(1.0)
        rounded = quantize_activations(inputs, self.range_min, self.range_max)
        return ops.where(self.initialized > 0, rounded, inputs)

    def range_tensor(self):
        """`(min, max)` as a float32 tensor of shape (2,): [0, 0] before
        the first training batch."""
        if self.fixed_range is not None:
            return ops.convert_to_tensor(self.fixed_range, "float32")
        low, high, initialized = (
            ops.cast(v, "float32")
            for v in (self.range_min, self.range_max, self.initialized)
        )
        return ops.stack([low, high]) * initialized

    def compute_output_shape(self, input_shape):
        return [input_shape, (2,)] if self.emit_range else input_shape

    @property
    def range(self):
        """`(min, max)` the layer rounds to now, None before it has one."""
        if self.fixed_range is not None:
            return self.fixed_range
        if not float(self.initialized):
            return None
        return float(self.range_min), float(self.range_max)

    def get_config(self):
        config = {**super().get_config(), "momentum": self.momentum}
        if self.emit_range:
            config["emit_range"] = True
        if self.fixed_range is not None:
            config["fixed_range"] = list(self.fixed_range)
        return config
