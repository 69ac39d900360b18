import re

import keras
from keras import ops

from keras_igc.validation import finite_float


@keras.saving.register_keras_serializable(package="keras_igc")
class CoupledSGD(keras.optimizers.Optimizer):
    """Momentum SGD with L2 weight decay inside the momentum (PyTorch, MXNet).

    The update of both papers' releases (`torch.optim.SGD(momentum=0.9,
    nesterov=True, weight_decay=1e-4)` and MXNet's `NAG`), for a weight `w`
    with gradient `g`, learning rate `lr`, decay `wd` and momentum `mu`:

    ```python
    g = g + wd * w                    # coupled: the decay is part of the gradient
    velocity = mu * velocity + g      # not scaled by the learning rate
    w = w - lr * (g + mu * velocity)  # nesterov=True; w - lr * velocity otherwise
    ```

    It differs from `keras.optimizers.SGD(weight_decay=...)` in two ways that
    change training: Keras decays the weight outside the momentum
    (`w -= lr * wd * w`), which at momentum 0.9 is about ten times weaker, and
    Keras' velocity holds `lr * g`, so a learning-rate drop takes effect only
    as old velocity decays.

    Parameter groups, as the releases form them, are rules on variable paths
    (`variable.path`, e.g. `"stage1_conv/mask_generator/expand/kernel"`), so
    they are saved with the optimizer and hold for a reloaded model:

    Args:
        learning_rate: a float or a `LearningRateSchedule` (e.g.
            `keras_igc.optimizers.StepDecay`).
        momentum: in [0, 1); the releases use 0.9.
        nesterov: Nesterov momentum, as both releases.
        weight_decay: the L2 coefficient added to every gradient (1e-4 in both
            releases).
        no_decay: regular expressions; a variable whose path matches one
            (`re.search`) is not decayed (MSGC: its generators and BatchNorm).
        learning_rate_multipliers: `{regular expression: multiplier}`; a
            variable whose path matches a pattern (the first in order) trains
            at `multiplier` times the rate (MSGC: 5 for the mask generators).
        **kwargs: the Keras optimizer arguments (`clipnorm`, `name`, ...).

    Example:

    >>> import keras, numpy as np
    >>> w = keras.Variable(np.ones(2, "float32"))
    >>> optimizer = CoupledSGD(0.1, weight_decay=0.5)
    >>> optimizer.apply([keras.ops.zeros(2)], [w])  # the gradient is wd * w
    >>> [round(float(v), 4) for v in keras.ops.convert_to_numpy(w)]  # 1 - 0.1 * 0.95
    [0.905, 0.905]
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.9,
        nesterov=True,
        weight_decay=0.0,
        no_decay=(),
        learning_rate_multipliers=None,
        name="coupled_sgd",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = finite_float(momentum, "momentum", "CoupledSGD")
        if self.momentum >= 1:
            raise ValueError(
                f"CoupledSGD `momentum` must be in [0, 1). Received: "
                f"momentum={momentum!r}."
            )
        self.nesterov = bool(nesterov)
        # Not Keras' `weight_decay` attribute: the base class would apply that
        # one a second time, decoupled.
        self.coupled_weight_decay = finite_float(
            weight_decay, "weight_decay", "CoupledSGD"
        )
        if isinstance(no_decay, str):
            no_decay = [no_decay]
        self.no_decay = [_pattern(p, "no_decay") for p in no_decay]
        multipliers = dict(learning_rate_multipliers or {})
        self.learning_rate_multipliers = {
            _pattern(p, "learning_rate_multipliers"): finite_float(
                m, f"learning_rate_multipliers[{p!r}]", "CoupledSGD"
            )
            for p, m in multipliers.items()
        }

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = []
        if self.momentum != 0:
            self.momentums = self.add_optimizer_variables(variables, "momentum")
        # Python constants per variable, fixed when the optimizer is built.
        self._decays = [self.decay_of(v) for v in variables]
        self._multipliers = [self.learning_rate_multiplier_of(v) for v in variables]

    def decay_of(self, variable):
        """The L2 coefficient applied to `variable`."""
        if any(re.search(p, variable.path) for p in self.no_decay):
            return 0.0
        return self.coupled_weight_decay

    def learning_rate_multiplier_of(self, variable):
        """The factor on the learning rate of `variable`."""
        for pattern, multiplier in self.learning_rate_multipliers.items():
            if re.search(pattern, variable.path):
                return multiplier
        return 1.0

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        if self._decays[index]:
            gradient = ops.add(gradient, ops.multiply(variable, self._decays[index]))
        learning_rate = ops.multiply(
            ops.cast(learning_rate, dtype), self._multipliers[index]
        )
        if self.momentum != 0:
            velocity = self.momentums[index]
            momentum = ops.cast(self.momentum, dtype)
            self.assign(velocity, ops.add(ops.multiply(velocity, momentum), gradient))
            if self.nesterov:
                gradient = ops.add(gradient, ops.multiply(velocity, momentum))
            else:
                gradient = velocity
        self.assign_sub(variable, ops.multiply(gradient, learning_rate))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "nesterov": self.nesterov,
                "weight_decay": self.coupled_weight_decay,
                "no_decay": list(self.no_decay),
                "learning_rate_multipliers": dict(self.learning_rate_multipliers),
            }
        )
        return config


def _pattern(pattern, argument):
    if not isinstance(pattern, str):
        raise ValueError(
            f"CoupledSGD `{argument}` takes regular expressions (strings) matched "
            f"against variable paths. Received: {pattern!r}."
        )
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(
            f"CoupledSGD `{argument}`: {pattern!r} is not a regular expression "
            f"({error})."
        ) from None
    return pattern
