"""Train and evaluate the IGC networks with the paper's recipe, through `model.fit`.

The recipe of the authors' release (`train_model.py`, `train_imagenet.py`,
`utility.py`), update for update: Nesterov SGD with momentum 0.9 and *coupled*
L2 weight decay 1e-4 on every parameter (`keras_igc.optimizers.CoupledSGD`,
the rule of MXNet's NAG and `torch.optim.SGD`); learning rate 0.1 for a batch
of 64 (scaled linearly with the batch size), divided by 10 after epochs
`epochs*1//2`, `epochs*3//4` and `epochs*7//8` (ImageNet: every 30 epochs of
120, lr 0.1 for a batch of 256), from the first update of the next epoch on
(`keras_igc.optimizers.StepDecay`). Epochs and batch size default to the
paper's for each dataset (`keras_igc.data.DATASETS`).

A run writes into its output folder:

    checkpoints/epoch-NNN.keras   the model after every epoch
    backup/                       the resume point (removed when done)
    logs/                         TensorBoard
    history.csv                   loss and accuracy per epoch
    curves.png                    loss and accuracy curves
    model.keras                   the final model

Running the same command again after an interruption resumes at the newest
backup (every epoch end, and inside epochs every `backup_every` steps or 10
minutes) and ends with the weights the uninterrupted run would have.

The package's modules, one job each: `recipes` (the recipes as data),
`plan` (what a run will do), `distribution` (one machine or many) and `fit`
(the run itself, and `evaluate`).
"""

from keras_igc.training.distribution import distribution_strategy
from keras_igc.training.fit import (
    evaluate,
    fit_data,
    fit_phases,
    train,
    train_stream,
    with_bn_batch,
)
from keras_igc.training.plan import (
    Plan,
    build_model,
    check_model_for_dataset,
    check_network_for_dataset,
    plan,
)
from keras_igc.training.recipes import (
    CIFAR_DROPS,
    IMAGENET_DROP_EVERY,
    RELEASE_DEVICES,
    Recipe,
    bn_group_size,
    learning_rate_schedule,
    make_optimizer,
    msgc_recipes,
    paper_recipe,
    qat_freeze_epoch,
    qat_recipe,
)

__all__ = [
    "CIFAR_DROPS",
    "IMAGENET_DROP_EVERY",
    "Plan",
    "RELEASE_DEVICES",
    "Recipe",
    "bn_group_size",
    "build_model",
    "check_model_for_dataset",
    "check_network_for_dataset",
    "distribution_strategy",
    "evaluate",
    "fit_data",
    "fit_phases",
    "learning_rate_schedule",
    "make_optimizer",
    "msgc_recipes",
    "paper_recipe",
    "plan",
    "qat_freeze_epoch",
    "qat_recipe",
    "train",
    "train_stream",
    "with_bn_batch",
]
