"""`MSGCModel`: a Functional model that reports its MAC ratio as metrics."""

import keras

from keras_igc import keras_internals
from keras_igc.layers import MACRegularizer
from keras_igc.plotting import plot_topology  # noqa: F401 (msgc.plot_topology)
from keras_igc.traced_model import TracedModel


class MACMetrics:
    """Mixin: a model that reports its `MACRegularizer`s' MACs as metrics.

    Put before a `keras.Model` subclass (`class M(MACMetrics, keras.Model)`):
    after each forward pass it averages the `last_macs` (millions) and
    `last_ratio` of every `MACRegularizer` it holds, nested models included,
    into the metrics `macs` and `mac_ratio`, so `fit` and `evaluate` report
    them on TensorFlow, JAX and PyTorch alike. `MSGCModel` and keras_igc.hub's
    MSGC tasks are built on it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.macs_tracker = keras.metrics.Mean(name="macs")
        self.ratio_tracker = keras.metrics.Mean(name="mac_ratio")

    def compute_loss(self, *args, **kwargs):
        loss = super().compute_loss(*args, **kwargs)
        # Here the forward pass's variable updates are visible on every backend.
        for layer in keras_internals.all_layers(self):
            if isinstance(layer, MACRegularizer):
                self.macs_tracker.update_state(layer.last_macs)
                self.ratio_tracker.update_state(layer.last_ratio)
        return loss


@keras.saving.register_keras_serializable(package="keras_igc")
class MSGCModel(MACMetrics, TracedModel):
    """A Functional model whose `MACRegularizer` MACs are metrics (`MACMetrics`).

    Built like `keras.Model(inputs, outputs)` (`msgc.convert` does); it
    reports `macs` and `mac_ratio` in `fit` and `evaluate`, and saves and
    loads as a `.keras` file like any Functional model.
    """
