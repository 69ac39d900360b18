"""The releases' recipes as data: `Recipe` (epochs, batch, learning
rate and its drops, the BatchNorm group), the optimizer and schedule they
make, and MSGC's phases."""

import dataclasses

from keras_igc import data
from keras_igc.optimizers import CoupledSGD, StepDecay
from keras_igc.validation import finite_float, positive_int

# The release's learning-rate drops, as (numerator, denominator) of the epochs,
# in Python 2 integer arithmetic (`num_epochs*7/8` of 20 epochs is 17).
CIFAR_DROPS = ((1, 2), (3, 4), (7, 8))
IMAGENET_DROP_EVERY = 30  # epochs: `range(30, num_epochs, 30)`
# GPUs the release splits each batch over (its `--gpus` defaults), so each
# BatchNorm sees batch_size / devices images: 32 on CIFAR, 64 on ImageNet.
RELEASE_DEVICES = {"cifar": 2, "imagenet": 4}


@dataclasses.dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int
    learning_rate: float
    boundaries: tuple  # epochs after which the rate drops by 10
    momentum: float = 0.9
    weight_decay: float = 1e-4  # coupled L2, on every parameter
    devices: int = 1  # the release's GPUs, each normalising its share of a batch

    @property
    def bn_batch(self):
        """Examples per BatchNorm statistic in the release."""
        return max(1, self.batch_size // self.devices)


def paper_recipe(dataset, epochs=None, batch_size=None, learning_rate=None):
    """The paper's recipe for `dataset`, with optional overrides.

    Without an explicit `learning_rate`, 0.1 is scaled by `batch_size` over the
    paper's batch size (the linear scaling rule). A drop that would fall at
    epoch 0 (a one-epoch run) is left out.
    """
    spec = data.spec(dataset)
    epochs = spec.epochs if epochs is None else epochs
    batch_size = spec.batch_size if batch_size is None else batch_size
    positive_int(epochs, "epochs")
    positive_int(batch_size, "batch_size")
    if learning_rate is None:
        learning_rate = 0.1 * batch_size / spec.batch_size
    learning_rate = finite_float(learning_rate, "learning_rate", positive=True)
    if spec.family == "imagenet":
        boundaries = range(IMAGENET_DROP_EVERY, epochs, IMAGENET_DROP_EVERY)
    else:
        boundaries = (epochs * num // den for num, den in CIFAR_DROPS)
    boundaries = tuple(b for b in boundaries if b > 0)
    devices = RELEASE_DEVICES[spec.family]
    return Recipe(epochs, batch_size, learning_rate, boundaries, devices=devices)


# Quantization-aware fine-tuning of a trained float model: a tenth of the
# float recipe's epochs at a hundredth of its initial rate, without drops
# (TensorFlow Model Optimization's and PyTorch's QAT guides fine-tune for a
# few epochs at about 1 % of the initial rate).
QAT_EPOCH_FRACTION = 0.1
QAT_RATE_FACTOR = 0.01


def qat_recipe(dataset, epochs=None, batch_size=None, learning_rate=None):
    """The recipe that fine-tunes a trained float model under int8 rounding
    (`keras_igc.quantization`), with optional overrides."""
    float_recipe = paper_recipe(dataset, batch_size=batch_size)
    if epochs is None:
        epochs = max(1, round(float_recipe.epochs * QAT_EPOCH_FRACTION))
    if learning_rate is None:
        learning_rate = float_recipe.learning_rate * QAT_RATE_FACTOR
    recipe = paper_recipe(dataset, epochs, batch_size, learning_rate)
    return dataclasses.replace(recipe, boundaries=())


def qat_freeze_epoch(recipe):
    """The epoch from which QAT trains with frozen BatchNorm statistics: the
    second half of the run (None for a one-epoch run: it never freezes)."""
    return None if recipe.epochs < 2 else (recipe.epochs + 1) // 2


def learning_rate_schedule(recipe, steps_per_epoch):
    """The rate divided by 10 from the first update after each boundary epoch."""
    positive_int(steps_per_epoch, "steps_per_epoch")
    return StepDecay(
        recipe.learning_rate, [b * steps_per_epoch for b in recipe.boundaries]
    )


def make_optimizer(recipe, steps_per_epoch):
    """The release's optimizer: Nesterov SGD with coupled weight decay on every
    trainable weight (BatchNorm's scale and offset too), on the step schedule."""
    return CoupledSGD(
        learning_rate_schedule(recipe, steps_per_epoch),
        momentum=recipe.momentum,
        nesterov=True,
        weight_decay=recipe.weight_decay,
    )


def msgc_recipes(host, model_options, epochs, batch_size, learning_rate, target):
    """`(Recipe, msgc.ReleaseRecipe)` for an MSGC host, with the overrides."""
    from keras_igc import msgc

    options = dict(model_options or {})
    unknown = set(options) - {"attention", "dense_weights", "heads", "granularity"}
    if unknown:
        raise ValueError(
            f"MSGC hosts take the model options attention, dense_weights, heads "
            f"and granularity. Received: {sorted(unknown)}."
        )
    release = msgc.release_recipe(host, options.get("attention", False))
    release = release.scaled(
        release.batch_size if batch_size is None
        else positive_int(batch_size, "batch_size")
    )  # fmt: skip
    if learning_rate is not None:
        # --learning-rate is the backbone's; the masks keep the release's 5x.
        rate = finite_float(learning_rate, "learning_rate", positive=True)
        factor = release.mask_learning_rate / release.backbone_learning_rate
        release = dataclasses.replace(
            release, backbone_learning_rate=rate, mask_learning_rate=factor * rate
        )
    if target is not None:
        target = finite_float(target, "mac_target", positive=True)
        if target > 1:
            raise ValueError(
                f"mac_target is a ratio of the dense network's MACs, in (0, 1]. "
                f"Received: mac_target={target}."
            )
        release = dataclasses.replace(release, target=target)
    epochs = release.epochs if epochs is None else positive_int(epochs, "epochs")
    release = dataclasses.replace(release, epochs=epochs)
    recipe = Recipe(
        epochs, release.batch_size, release.backbone_learning_rate, (),
        devices=release.devices,
    )  # fmt: skip
    return recipe, release


def bn_group_size(recipe, replicas=1, bn_batch=None):
    """The group size for `GhostBatchNormalization`, or None for whole batches.

    `bn_batch`: None for the release's (`recipe.bn_batch`, at most each
    device's batch), `"device"` for each device's whole batch, or a number
    that divides each device's batch.
    """
    per_replica, remainder = divmod(recipe.batch_size, replicas)
    if remainder:
        raise ValueError(
            f"batch_size={recipe.batch_size} does not split evenly over "
            f"{replicas} devices; use a multiple of {replicas}."
        )
    if bn_batch == "device":
        return None
    if bn_batch is None:
        bn_batch = min(recipe.bn_batch, per_replica)
    positive_int(bn_batch, "bn_batch")
    if per_replica % bn_batch:
        raise ValueError(
            f"bn_batch={bn_batch} does not divide the {per_replica} examples each "
            f"of the {replicas} device(s) gets (batch_size={recipe.batch_size}); "
            f"pass a divisor of {per_replica}, or bn_batch='device' (--bn-batch "
            f"device) to normalise each device's whole batch."
        )
    return None if bn_batch == per_replica and replicas == 1 else bn_batch
