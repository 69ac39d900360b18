"""Sweep the partition numbers L and M of IGC networks with KerasTuner.

The paper's question is how to split a layer into L primary and M secondary
partitions. Two sweeps answer it:

- fixed width: every `(L, M)` with `L * M = G` (`fixed_width_pairs`);
- fixed budget: for each M, the widest L whose network has no more
  convolution weights than a reference network such as RegConv-W16
  (`fixed_budget_pairs`). Wider is what IGC buys with its sparsity, so this
  is the paper's comparison.

`IGCHyperModel` exposes the valid configurations as one `Choice` (KerasTuner
freezes the bounds of a hyperparameter that depends on another, so L cannot
be a range that depends on M) and trains each trial with the training
module's pipeline and recipe. `sweep` runs a tuner over it and writes the
report (`report.csv`, `report.md`, `accuracy_vs_m.png`,
`accuracy_vs_params.png`). Running it again with the same directory resumes:
finished trials are kept, an interrupted one runs again.
"""

import csv
import dataclasses
import json
import os
import time

import keras
import keras_tuner

from keras_igc import applications, data, keras_internals, quick, training
from keras_igc.applications.cifar import igc_conv_weights, units_per_stage
from keras_igc.complexity import model_complexity
from keras_igc.plotting import plot_sweep
from keras_igc.validation import positive_int

# Trials train through `keras_igc.training` (tf.data, tf.distribute).
SUPPORTED_BACKENDS = ("tensorflow",)
MODES = ("width", "budget")
TUNERS = {
    "grid": keras_tuner.GridSearch,
    "random": keras_tuner.RandomSearch,
    "bayesian": keras_tuner.BayesianOptimization,
    "hyperband": keras_tuner.Hyperband,
}
# Secondary partitions tried by the budget sweep (the paper's table has
# 1, 2, 3, 4, 8 and 16).
BUDGET_SECONDARY_PARTITIONS = (1, 2, 3, 4, 6, 8, 12, 16)
PROJECT = "igc_sweep"
REPORT_COLUMNS = (
    "trial", "status", "L", "M", "depth", "widths", "conv_params", "params",
    "macs", "best_val_accuracy", "epochs", "wall_time_s",
)  # fmt: skip


def fixed_width_pairs(width):
    """Every `(L, M)` with `L * M = width`, by increasing M.

    >>> fixed_width_pairs(12)
    [(12, 1), (6, 2), (4, 3), (3, 4), (2, 6), (1, 12)]
    """
    width = positive_int(width, "width")
    return [(width // m, m) for m in range(1, width + 1) if width % m == 0]


def fixed_budget_pairs(
    budget,
    depth,
    residual=False,
    input_channels=3,
    secondary_partitions=BUDGET_SECONDARY_PARTITIONS,
):
    """For each M, the widest `(L, M)` network within `budget` convolution weights.

    Args:
        budget: the most convolution weights a network may have (e.g.
            `reference_budget("RegConv-W16", depth)`).
        depth: network depth (3k+2 plain, 6k+2 residual).
        residual: residual (+Ident.) networks.
        input_channels: image channels.
        secondary_partitions: the M values to try; an M whose smallest
            network (L = 1) exceeds the budget is left out.

    Returns:
        `[(L, M), ...]` by increasing M.

    Raises:
        ValueError: when no M fits, naming the smallest network's size.
    """
    budget = positive_int(budget, "budget")
    units_per_stage(depth, residual)  # a clear error for an impossible depth
    pairs = []
    for M in sorted(set(secondary_partitions)):
        M = positive_int(M, "secondary_partitions")

        def params(L, M=M):
            return igc_conv_weights(L, M, depth, residual, input_channels)

        if params(1) > budget:
            continue
        low, high = 1, 2
        while params(high) <= budget:  # params grow with L: double, then bisect
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if params(middle) <= budget else (low, middle)
        pairs.append((low, M))
    if not pairs:
        smallest = min(
            igc_conv_weights(1, M, depth, residual, input_channels)
            for M in secondary_partitions
        )
        raise ValueError(
            f"No IGC network of depth {depth} fits a budget of {budget:,} "
            f"convolution weights: the smallest candidate (L=1, "
            f"M={min(secondary_partitions)}) has {smallest:,}. Raise the budget "
            f"(a wider reference network), lower the depth, or try smaller "
            f"secondary_partitions."
        )
    return pairs


def reference_budget(reference, depth, residual=False, input_shape=(32, 32, 3)):
    """Convolution weights of a registered network, e.g. "RegConv-W16"."""
    name = reference + ("+Ident." if residual and "+" not in reference else "")
    model = applications.get_model(name, depth=depth, input_shape=input_shape)
    return model_complexity(model)["conv_params"]


def config_name(L, M, depth):
    return f"L{L}M{M}-D{depth}"


def parse_config_name(name):
    """`"L24M2-D8"` -> `(24, 2, 8)`."""
    partitions, depth = name.split("-D")
    L, M = partitions[1:].split("M")
    return int(L), int(M), int(depth)


class IGCHyperModel(keras_tuner.HyperModel):
    """IGC CIFAR-family networks over valid `(L, M)` pairs, trained with the
    paper's recipe.

    The hyperparameters are one `Choice` named `"config"` over
    `"L{L}M{M}-D{depth}"` strings (each a valid network), and a `Choice` of
    learning rates when more than one is given. Every trial trains on the
    training module's `tf.data` pipeline with the recipe of `dataset`
    (Nesterov SGD, weight decay, step schedule) for `epochs` epochs.

    Args:
        configs: `[(L, M, depth), ...]` to choose from.
        dataset: a name from `keras_igc.data.DATASETS` (for the input shape,
            classes and recipe).
        steps_per_epoch: batches per epoch, which the learning-rate schedule
            counts in (`training.fit_data` returns it for a dataset).
        epochs: epochs per trial (the schedule is shortened to them).
        residual: residual (+Ident.) networks.
        batch_size: default: the dataset's.
        learning_rates: candidate initial learning rates (default: the
            recipe's).

    Example:

    >>> import keras_tuner
    >>> from keras_igc import tuning
    >>> hypermodel = tuning.IGCHyperModel([(24, 2, 8), (12, 4, 8)], "digits",
    ...                                   steps_per_epoch=45, epochs=1)
    >>> model = hypermodel.build(keras_tuner.HyperParameters())
    >>> model.name
    'igc_l24m2_d8'
    """

    def __init__(
        self,
        configs,
        dataset,
        steps_per_epoch,
        epochs=1,
        residual=False,
        batch_size=None,
        learning_rates=None,
    ):
        super().__init__(name="igc")
        if not configs:
            raise ValueError("IGCHyperModel needs at least one (L, M, depth) config.")
        self.configs = {config_name(*c): tuple(c) for c in configs}
        self.spec = data.spec(dataset)
        self.recipe = training.paper_recipe(dataset, epochs, batch_size)
        self.residual = bool(residual)
        self.learning_rates = list(learning_rates or [self.recipe.learning_rate])
        self.steps_per_epoch = positive_int(steps_per_epoch, "steps_per_epoch")
        self.complexity = {}  # by config name, filled as models are built

    def build(self, hp):
        # KerasTuner clears the session before each build too; this keeps
        # trials independent when another tuner or a loop calls build.
        keras.backend.clear_session()
        name = hp.Choice("config", list(self.configs))
        if len(self.learning_rates) > 1:
            learning_rate = hp.Choice("learning_rate", self.learning_rates)
        else:
            learning_rate = self.learning_rates[0]
        if name not in self.configs:
            raise keras_tuner.errors.FailedTrialError(
                f"Config {name!r} is not one of this sweep's {list(self.configs)} "
                f"(a resumed directory from another sweep?)."
            )
        L, M, depth = self.configs[name]
        try:
            model = applications.igc_cifar_network(
                depth,
                self.residual,
                L,
                M,
                input_shape=(
                    self.spec.image_size,
                    self.spec.image_size,
                    self.spec.channels,
                ),
                classes=self.spec.classes,
            )
        except ValueError as error:
            raise keras_tuner.errors.FailedTrialError(str(error)) from error
        self.complexity[name] = model_complexity(model)
        recipe = dataclasses.replace(self.recipe, learning_rate=learning_rate)
        # BatchNorm statistics over the release's per-GPU share of each batch.
        model = training.with_bn_batch(model, training.bn_group_size(recipe))
        model.compile(
            optimizer=training.make_optimizer(recipe, self.steps_per_epoch),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def fit(self, hp, model, *args, **kwargs):
        data = args[0] if args else kwargs.get("x")
        if hasattr(data, "element_spec"):  # before fit traces its step
            keras_internals.build_metrics(model, data.element_spec)
        try:
            return model.fit(*args, **kwargs)
        except Exception as error:  # out of memory, a NaN loss turned error...
            if type(error).__name__ == "ResourceExhaustedError":
                raise keras_tuner.errors.FailedTrialError(
                    f"{hp.get('config')} ran out of memory: {error}"
                ) from error
            raise


class _RecordsTrials:
    """Tuner mixin: write each trial's network size, epochs and wall time."""

    def run_trial(self, trial, *args, **kwargs):
        start = time.perf_counter()
        histories = super().run_trial(trial, *args, **kwargs)
        name = trial.hyperparameters.get("config")
        epochs = trial.hyperparameters.values.get("tuner/epochs")
        if epochs is None:
            epochs = max(len(h.history.get("loss", [])) for h in histories)
        record = {
            **self.hypermodel.complexity.get(name, {}),
            "epochs": epochs,
            "wall_time_s": time.perf_counter() - start,
        }
        with open(_record_path(self.project_dir, trial.trial_id), "w") as f:
            json.dump(record, f)
        return histories


def _record_path(project_dir, trial_id):
    return os.path.join(project_dir, f"trial_{trial_id}", "igc_record.json")


def make_tuner(
    hypermodel,
    tuner="grid",
    directory="runs/sweep",
    max_trials=None,
    seed=None,
    overwrite=False,
):
    """A KerasTuner tuner over `hypermodel` that records trial sizes and times.

    Args:
        tuner: "grid" (every config once; the default), "random",
            "bayesian" or "hyperband" (successive halving up to the
            hypermodel's epochs; `max_trials` does not apply).
        directory: the sweep folder. An existing sweep there resumes.
        max_trials: at most this many trials (default: one per config).
        seed: tuner seed.
        overwrite: start over, discarding the sweep in `directory`.
    """
    if tuner not in TUNERS:
        raise ValueError(
            f"Unknown tuner {tuner!r}. Choose one of {list(TUNERS)} (KerasTuner's "
            f"GridSearch, RandomSearch, BayesianOptimization, Hyperband)."
        )
    cls = type(f"IGC{TUNERS[tuner].__name__}", (_RecordsTrials, TUNERS[tuner]), {})
    common = dict(
        objective="val_accuracy",
        directory=directory,
        project_name=PROJECT,
        seed=seed,
        overwrite=overwrite,
    )
    if tuner == "hyperband":
        return cls(hypermodel, max_epochs=hypermodel.recipe.epochs, **common)
    trials = (
        len(hypermodel.configs) * len(hypermodel.learning_rates)
        if max_trials is None else max_trials
    )  # fmt: skip
    return cls(hypermodel, max_trials=positive_int(trials, "max_trials"), **common)


def sweep(
    mode="budget",
    dataset="digits",
    directory="runs/sweep",
    *,
    width=48,
    reference="RegConv-W16",
    secondary_partitions=BUDGET_SECONDARY_PARTITIONS,
    depth=8,
    residual=False,
    epochs=None,
    batch_size=None,
    learning_rates=None,
    tuner="grid",
    max_trials=None,
    steps_per_epoch=None,
    data_dir=None,
    download=False,
    seed=None,
    overwrite=False,
    verbose=1,
    callbacks=(),
):
    """Run an L/M sweep and write its report into `directory`.

    Args:
        mode: "width" (every pair with `L * M = width`) or "budget" (for each
            of `secondary_partitions`, the widest L within the convolution
            weights of `reference` at the same depth).
        dataset, data_dir, download, seed: see `keras_igc.data.load`.
        directory: the sweep folder; running again with the same one resumes.
        epochs: epochs per trial (default: the dataset's recipe, which is
            long; sweeps usually shorten it).
        tuner, max_trials, overwrite: see `make_tuner`.
        depth, residual, batch_size, learning_rates: see `IGCHyperModel`.
        steps_per_epoch: batches per epoch (default: the whole training
            split).
        callbacks: more Keras callbacks for every trial.

    Returns:
        The report rows (see `report`).
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}.")
    epochs, steps_per_epoch = quick.epochs(epochs), quick.steps(steps_per_epoch)
    max_trials = quick.trials(max_trials)
    spec = data.spec(dataset)
    if mode == "width":
        pairs = fixed_width_pairs(width)
    else:
        shape = (spec.image_size, spec.image_size, spec.channels)
        budget = reference_budget(reference, depth, residual, shape)
        pairs = fixed_budget_pairs(
            budget, depth, residual, spec.channels, secondary_partitions
        )
    train_data, eval_data, steps = training.fit_data(
        dataset,
        training.paper_recipe(dataset, epochs, batch_size).batch_size,
        steps_per_epoch,
        data_dir,
        download,
        seed,
    )
    hypermodel = IGCHyperModel(
        [(L, M, depth) for L, M in pairs],
        dataset,
        steps,
        epochs=epochs,
        residual=residual,
        batch_size=batch_size,
        learning_rates=learning_rates,
    )
    search = make_tuner(hypermodel, tuner, directory, max_trials, seed, overwrite)
    search.search(
        train_data,
        epochs=hypermodel.recipe.epochs,
        steps_per_epoch=steps,
        validation_data=eval_data,
        shuffle=False,  # the pipeline shuffles
        callbacks=list(callbacks),
        verbose=verbose,
    )
    return report(search, directory)


def report(tuner, directory):
    """Write `report.csv`, `report.md` and the two plots; return the rows.

    One row per trial: trial id, status, L, M, depth, stage widths, convolution
    and total weights, MACs, best validation accuracy, epochs and wall time.
    """
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        name = trial.hyperparameters.values.get("config")
        if name is None:
            continue
        L, M, depth = parse_config_name(name)
        record = {}
        path = _record_path(tuner.project_dir, trial_id)
        if os.path.exists(path):
            with open(path) as f:
                record = json.load(f)
        best = trial.metrics.get_best_value("val_accuracy")
        rows.append(
            {
                "trial": trial_id,
                "status": trial.status,
                "L": L,
                "M": M,
                "depth": depth,
                "widths": "/".join(str(L * M * 2**s) for s in range(3)),
                "conv_params": record.get("conv_params"),
                "params": record.get("total_params"),
                "macs": record.get("macs"),
                "best_val_accuracy": None if best is None else round(best, 4),
                "epochs": record.get("epochs"),
                "wall_time_s": _round(record.get("wall_time_s")),
            }
        )
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "report.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, REPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write(format_report(rows) + "\n")
    plot_sweep(rows, directory)
    return rows


def format_report(rows):
    """Report rows as a Markdown table."""
    lines = [
        "| " + " | ".join(REPORT_COLUMNS) + " |",
        "|" + "---|" * len(REPORT_COLUMNS),
    ]
    for row in rows:
        cells = [_cell(row[c]) for c in REPORT_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value):
    if value is None:
        return "—"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:,}"
    return str(value)


def _round(value):
    return None if value is None else round(value, 1)
