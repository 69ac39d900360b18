"""The MSGC release's recipe: `MACTargetScheduler` (tau from 1 to the
target), `ReleaseRecipe` per host and `compile_for_msgc`."""

import dataclasses
import re
import warnings

import keras

from keras_igc import keras_internals
from keras_igc.layers import MACRegularizer
from keras_igc.msgc.model import MACMetrics
from keras_igc.optimizers import CoupledSGD, EpochCosineDecay
from keras_igc.plotting import plot_topology  # noqa: F401 (msgc.plot_topology)
from keras_igc.validation import finite_float, positive_int


class MACTargetScheduler(keras.callbacks.Callback):
    """Moves the MAC regularizer's `tau` linearly from 1 to `target`.

    Over the first `fraction` of the training steps (MSGC: half), then holds
    it at `target`; set before each step from the optimizer's step count, as
    the release sets it from its progress (`main_dist.py`).

    Args:
        target: MAC ratio to reach, in (0, 1].
        fraction: part of training over which tau decreases, in (0, 1].
        total_steps: the steps of the whole training; default: the `fit`
            call's epochs times its steps (give it where a run is several
            calls, e.g. one that resumes mid-epoch).
    """

    def __init__(self, target, fraction=0.5, total_steps=None):
        super().__init__()
        for value, what in ((target, "target"), (fraction, "fraction")):
            if not isinstance(value, int | float) or not 0 < value <= 1:
                raise ValueError(
                    f"MACTargetScheduler `{what}` must be in (0, 1] (a ratio of "
                    f"the dense network's MACs / of training). Received: "
                    f"{what}={value!r}."
                )
        self.target = float(target)
        self.fraction = float(fraction)
        if total_steps is not None:
            total_steps = positive_int(total_steps, "total_steps", "MACTargetScheduler")
        self.total_steps = total_steps
        self._regularizers = []

    def on_train_begin(self, logs=None):
        self._regularizers = [
            layer
            for layer in keras_internals.all_layers(self.model)
            if isinstance(layer, MACRegularizer)
        ]
        if not self._regularizers:
            raise ValueError(
                "MACTargetScheduler found no MACRegularizer in the model; build "
                "it with keras_igc.msgc.convert or an MSGC application."
            )
        total = self.total_steps
        if total is None:
            total = self.params["epochs"] * (self.params["steps"] or 1)
        self._total = max(1, total)

    def on_train_batch_begin(self, batch, logs=None):
        # The optimizer's step, not a count of this call's batches: a resumed
        # run (BackupAndRestore) continues the schedule where it stopped.
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        progress = min(1.0, step / (self.fraction * self._total))
        tau = 1.0 - (1.0 - self.target) * progress
        for layer in self._regularizers:
            layer.tau.assign(tau)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["tau"] = float(keras.ops.convert_to_numpy(self._regularizers[0].tau))


def mask_variables(model):
    """The trainable weights of the mask generators (not the attention ones)."""
    return [
        variable
        for variable in model.trainable_variables
        if re.search(MASK_GENERATOR_PATTERN, variable.path)
    ]


# The release's parameter groups (`main_dist.py`), as rules on variable paths:
# names holding "mask" (the mask generators, their BatchNorm included) train at
# the mask rate without decay; BatchNorm scales and offsets at the backbone rate
# without decay; everything else (convolutions, the classifier, the attention
# generators) at the backbone rate with decay.
MASK_GENERATOR_PATTERN = r"(^|/)mask_generator/"
NORMALIZATION_PATTERN = r"/(gamma|beta)$"


@dataclasses.dataclass(frozen=True)
class ReleaseRecipe:
    """One host's run in the MSGC release (`scripts.sh`, `main_dist.py`)."""

    epochs: int
    target: float  # tau at the end of the MAC schedule
    batch_size: int = 256  # 2 GPUs x 128 (torch.distributed.launch, -b 128)
    mask_learning_rate: float = 0.075  # --lr
    backbone_learning_rate: float = 0.015  # --lr x --lr-mul 0.2
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    mac_weight: float = 30.0  # --lmd
    target_fraction: float = 0.5  # tau reaches the target at --pstop 0.5
    devices: int = 2  # each GPU's BatchNorm normalises its 128 images

    def scaled(self, batch_size):
        """The recipe at another batch size: both rates scale linearly."""
        factor = batch_size / self.batch_size
        return dataclasses.replace(
            self,
            batch_size=batch_size,
            mask_learning_rate=self.mask_learning_rate * factor,
            backbone_learning_rate=self.backbone_learning_rate * factor,
        )


# (host, attention) -> the release's training command in scripts.sh.
RELEASE_RECIPES = {
    ("MSGCResNet18", False): ReleaseRecipe(epochs=120, target=0.49),
    ("MSGCResNet18", True): ReleaseRecipe(epochs=120, target=0.488),
    ("MSGCResNet50", False): ReleaseRecipe(epochs=120, target=0.457),
    ("MSGCResNet50", True): ReleaseRecipe(epochs=120, target=0.457),
    ("MSGCMobileNetV2", False): ReleaseRecipe(epochs=150, target=0.65),
    ("MSGCMobileNetV2", True): ReleaseRecipe(epochs=150, target=0.628),
}


def release_recipe(host, attention=False):
    """The MSGC release's recipe for a host (`applications.HOSTS`)."""
    key = (host, bool(attention))
    if key not in RELEASE_RECIPES:
        hosts = sorted({h for h, _ in RELEASE_RECIPES})
        raise ValueError(f"Unknown MSGC host {host!r}. Choose one of {hosts}.")
    return RELEASE_RECIPES[key]


def compile_for_msgc(
    model,
    steps_per_epoch,
    epochs,
    mask_learning_rate=0.075,
    backbone_learning_rate=0.015,
    weight_decay=1e-4,
    label_smoothing=0.1,
    warmup_epochs=0,
):
    """Compile with the MSGC release's recipe (`main_dist.py`, `utils.py`).

    `keras_igc.optimizers.CoupledSGD`: Nesterov momentum 0.9 with coupled L2
    `weight_decay` (as `torch.optim.SGD`); the rate follows the release's
    per-epoch cosine (`EpochCosineDecay`, optional linear warm-up); the mask
    generators train at `mask_learning_rate` without decay, BatchNorm at
    `backbone_learning_rate` without decay, and every other weight (the
    attention generators included) at `backbone_learning_rate` with decay.
    The loss is label-smoothed cross-entropy (labels as integers), plus the MAC
    loss of the model's `MACRegularizer`; the metric is accuracy.

    The defaults are the release's (`release_recipe(host)` has each host's
    epochs, batch and MAC target: 120 epochs, MobileNetV2 150; a batch of
    2 x 128; targets 0.49 / 0.457 / 0.65 for ResNet-18 / ResNet-50 /
    MobileNetV2 without attention, 0.488 / 0.457 / 0.628 with it). Add
    `MACTargetScheduler(target)` to `fit`'s callbacks.
    """
    owner = "compile_for_msgc"
    if not isinstance(model, MACMetrics):
        warnings.warn(
            f"{model.name!r} is a {type(model).__name__}: it trains, but its fit "
            f"logs will not show the MACs. Build it with "
            f"keras_igc.msgc.MSGCModel(inputs, outputs) (msgc.convert does).",
            stacklevel=2,
        )
    positive_int(steps_per_epoch, "steps_per_epoch", owner)
    positive_int(epochs, "epochs", owner)
    mask_learning_rate = finite_float(
        mask_learning_rate, "mask_learning_rate", owner, positive=True
    )
    backbone_learning_rate = finite_float(
        backbone_learning_rate, "backbone_learning_rate", owner, positive=True
    )
    optimizer = CoupledSGD(
        EpochCosineDecay(
            backbone_learning_rate, epochs, steps_per_epoch, warmup_epochs
        ),
        momentum=0.9,
        nesterov=True,
        weight_decay=weight_decay,
        no_decay=[MASK_GENERATOR_PATTERN, NORMALIZATION_PATTERN],
        learning_rate_multipliers={
            MASK_GENERATOR_PATTERN: mask_learning_rate / backbone_learning_rate
        },
        name="msgc_sgd",
    )
    model.compile(
        optimizer=optimizer,
        loss=_SmoothedSparseCrossEntropy(label_smoothing),
        metrics=["accuracy"],
    )
    return model


@keras.saving.register_keras_serializable(package="keras_igc")
class _SmoothedSparseCrossEntropy(keras.losses.Loss):
    """Label-smoothed cross-entropy for integer labels and probabilities."""

    def __init__(self, label_smoothing=0.1, name="smoothed_crossentropy"):
        super().__init__(name=name)
        self.label_smoothing = label_smoothing

    def get_config(self):
        # Saved with the model's compile config, so a reloaded model trains on.
        return {"label_smoothing": self.label_smoothing, "name": self.name}

    def call(self, y_true, y_pred):
        classes = keras.ops.shape(y_pred)[-1]
        y_true = keras.ops.one_hot(
            keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), classes
        )
        return keras.losses.categorical_crossentropy(
            y_true, y_pred, label_smoothing=self.label_smoothing
        )
