import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_igc")
class GumbelSigmoidGate(keras.layers.Layer):
    """Binary gates from logits: Gumbel-sigmoid with a straight-through threshold.

    Training: logistic noise is added to each logit, the sum divided by the
    temperature goes through a sigmoid, and the forward pass thresholds it at
    `threshold` to exact 0/1 values while the gradient is the sigmoid's (the
    straight-through estimator). Inference: no noise, a deterministic
    threshold, `sigmoid(logit / temperature) >= threshold` (for the default
    0.5: `logit >= 0`). MSGC uses it to turn mask logits into channel masks.

    Args:
        temperature: positive float, the Gumbel-sigmoid temperature (MSGC:
            2/3).
        threshold: float in (0, 1).
        seed: optional int for the noise.
        **kwargs: base layer keyword arguments.

    Example:

    >>> import keras, keras_igc
    >>> gate = keras_igc.GumbelSigmoidGate()
    >>> logits = keras.ops.convert_to_tensor([[-3.0, 0.5, 2.0]])
    >>> keras.ops.convert_to_numpy(gate(logits, training=False)).tolist()
    [[0.0, 1.0, 1.0]]
    """

    def __init__(self, temperature=2 / 3, threshold=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # elementwise, as keras.layers.Activation
        if not isinstance(temperature, int | float) or not temperature > 0:
            raise ValueError(
                f"GumbelSigmoidGate `temperature` must be a positive number. "
                f"Received: temperature={temperature!r}."
            )
        if not isinstance(threshold, int | float) or not 0 < threshold < 1:
            raise ValueError(
                f"GumbelSigmoidGate `threshold` must be in (0, 1). Received: "
                f"threshold={threshold!r}."
            )
        self.temperature = float(temperature)
        self.threshold = float(threshold)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, logits, training=None):
        if not training:
            return self.inference_gates(logits)
        noise = ops.cast(self.sample_noise(ops.shape(logits)), logits.dtype)
        soft = ops.sigmoid((logits + noise) / self.temperature)
        hard = ops.cast(soft >= self.threshold, soft.dtype)
        return soft + ops.stop_gradient(hard - soft)

    def sample_noise(self, shape):
        """Logistic noise `log(u) - log(1 - u)`, `u ~ U(0, 1)`, for training.

        One place to draw it, so a parity check can replace it by the noise
        a reference implementation drew.
        """
        u = keras.random.uniform(shape, 1e-6, 1 - 1e-6, seed=self.seed_generator)
        return ops.log(u) - ops.log(1 - u)

    def inference_gates(self, logits):
        """The deterministic gates of inference, `sigmoid(logit / T) >= t`."""
        # sigmoid(l / T) >= t  <=>  l >= T * logit(t)
        cut = self.temperature * math.log(self.threshold / (1 - self.threshold))
        return ops.cast(logits >= cut, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "threshold": self.threshold,
            "seed": self.seed,
        }
