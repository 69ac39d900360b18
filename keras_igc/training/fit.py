"""A run of a `Plan` through `model.fit`: its folder, the resume point,
the fit phases (the learning-rate drops, MSGC's phases), and `evaluate`."""

import contextlib
import functools
import json
import math
import os

import keras

from keras_igc import applications, data, keras_internals, preprocessing, quick, runs
from keras_igc.layers import FusedBatchNormalization, GhostBatchNormalization
from keras_igc.plotting import plot_history
from keras_igc.saving import load_keras_model
from keras_igc.training.distribution import (
    check_distribution,
    distribution_strategy,
    multi_worker_workarounds,
    worker_name,
)
from keras_igc.training.plan import build_model, plan
from keras_igc.training.recipes import (
    Recipe,
    bn_group_size,
    make_optimizer,
    qat_freeze_epoch,
)
from keras_igc.validation import is_integer, positive_int


def train(
    model="IGC-L24M2", dataset="cifar10", output_dir="runs/igc", *, depth=20,
    epochs=None, batch_size=None, learning_rate=None, data_dir=None,
    download=False, seed=None, steps_per_epoch=None, mixed_precision="auto",
    verbose="auto", callbacks=(), model_options=None, bn_batch=None,
    strategy=None, mac_target=None, backup_every=None, quantize_aware=False,
):  # fmt: skip
    """Train a registered network on a dataset with the paper's recipe
    (an MSGC host: the MSGC release's, `msgc.release_recipe`).

    Args:
        model: a name from `keras_igc.applications.list_models(builders=True)`,
            or a built `keras.Model` of yours with a softmax classifier (on
            one device; it keeps its own dtype policy).
        dataset: a name from `keras_igc.data.DATASETS`.
        output_dir: where checkpoints, logs, history and the model go. Running
            again with the same folder resumes an interrupted run, exactly.
        depth, model_options: builder arguments (`{"secondary_partitions": 4}`;
            an MSGC host's `attention`, `heads`, `granularity`,
            `dense_weights`).
        epochs, batch_size, learning_rate: override the recipe.
        data_dir, download: see `keras_igc.data.load`.
        seed: the initial weights, data order and augmentation, dropout and
            Gumbel noise follow from it (default: drawn and recorded).
        steps_per_epoch: limit each epoch (default: the whole training split).
        mixed_precision: "auto" (mixed_float16 on a GPU, float32 on CPU),
            "float32", "mixed_float16" or "mixed_bfloat16".
        verbose, callbacks: for `model.fit`.
        bn_batch: examples per BatchNorm statistic (default: the release's
            per-GPU batch; `"device"`: each device's whole batch).
        strategy: a `tf.distribute` strategy (`distribution_strategy()`).
        mac_target: MSGC hosts: the MAC ratio to reach (the release's).
        backup_every: steps between backups inside an epoch, or `"epoch"`
            (default: every 10 minutes; every epoch end is backed up).
        quantize_aware: fine-tune `model`, a trained float `keras.Model`,
            under the int8 rounding of its exports
            (`keras_igc.quantization.quantize_aware`): `qat_recipe` (a tenth
            of the epochs at a hundredth of the rate), BatchNorm statistics
            frozen for the second half (`qat_freeze_epoch`).

    Returns:
        `(model, history)`: the trained model and the `History` of this call.
    """
    # KERAS_IGC_QUICK=1 (smoke tests) shortens the run; unset, nothing changes.
    epochs, steps_per_epoch = quick.epochs(epochs), quick.steps(steps_per_epoch)
    run = plan(
        model, dataset, depth=depth, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, model_options=model_options,
        mac_target=mac_target, bn_batch=bn_batch, quantize_aware=quantize_aware,
    )  # fmt: skip
    # First: MultiWorkerMirroredStrategy must exist before any TensorFlow op.
    strategy = strategy or distribution_strategy()
    check_distribution(run, strategy, seed)
    folder, chief, worker = _run_folders(output_dir, strategy)
    folder.lock.acquire()
    try:
        folder.clean_partial_files()
        snapshot = chief.backups.latest()
        seed = _run_seed(seed, snapshot, chief)
        train_data, eval_data, steps_per_epoch = fit_data(
            dataset, run.recipe.batch_size, steps_per_epoch, data_dir, download,
            seed, recipe=run.data_recipe,
        )  # fmt: skip
        _check_snapshot(snapshot, steps_per_epoch, run.recipe.batch_size)
        if worker is None:
            # How an image becomes this model's input: predict and export read it.
            record = preprocessing.for_dataset(
                dataset, run.data_recipe, data_dir=data_dir
            )
            record.save(folder.root)
        backup = runs.RunBackup(
            chief, steps_per_epoch, backup_every,
            state={"seed": seed, "batch_size": run.recipe.batch_size},
            after_save=folder.commit, read_only=worker is not None,
            element_spec=train_data.element_spec,
        )  # fmt: skip
        run_callbacks = _run_callbacks(run, folder, backup, output_dir, worker)
        with _dtype_policy(mixed_precision):
            network, extra = _network(run, strategy, seed, steps_per_epoch, train_data)
            if worker is None:
                print(_banner(network, run, folder, snapshot))
            stream = functools.partial(
                train_stream, dataset, run.recipe.batch_size, data_dir, download,
                seed, recipe=run.data_recipe,
            )  # fmt: skip
            history = _fit(
                network, run, snapshot, steps_per_epoch, train_data, stream,
                eval_data, [*extra, *run_callbacks, *callbacks], verbose,
            )  # fmt: skip
        _check_finite(history, folder.root, run.recipe)
        folder.finish(network, run.recipe.epochs)
    finally:
        folder.lock.release()
    return network, history


def _run_folders(output_dir, strategy):
    """`(folder, chief's folder, worker name or None)`. Every worker trains;
    the chief writes the run into `output_dir`, the others restore from its
    backup and keep their final model in a folder of their own."""
    worker = worker_name(strategy)
    run_dir = output_dir if worker is None else os.path.join(output_dir, worker)
    folder = runs.RunFolder(run_dir)
    folder.check_writable()
    if folder.is_finished():
        _refuse_finished(folder)
    chief = folder if worker is None else runs.RunFolder(output_dir)
    return folder, chief, worker


def _run_callbacks(run, folder, backup, output_dir, worker):
    """The chief records the run (history, curves, TensorBoard) and backs it
    up; the other workers only restore."""
    if worker is not None:
        return [backup, keras.callbacks.TerminateOnNaN()]
    plot = functools.partial(
        plot_history, title=f"{run.name} on {run.dataset}", drops=run.recipe.boundaries
    )
    return [
        runs.RunRecorder(folder, plot=plot),
        backup,
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs")),
        keras.callbacks.TerminateOnNaN(),
    ]


@contextlib.contextmanager
def _dtype_policy(mixed_precision):
    """The policy is global in Keras: set it for this run only."""
    previous = keras.config.dtype_policy()
    try:
        _set_precision(mixed_precision)
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _network(run, strategy, seed, steps_per_epoch, train_data):
    """`(network, callbacks)`: the network built and compiled with its recipe
    in the strategy's scope, and the callbacks the recipe needs first (an
    MSGC host's MAC target, whose tau the epoch's logs carry)."""
    import tensorflow as tf

    # Same seed, same weights: the initial weights, dropout and Gumbel noise
    # come from it, and every kernel is deterministic.
    keras.utils.set_random_seed(seed)
    with keras_internals.op_determinism(), strategy.scope():
        if run.msgc is not None:
            network, extra = _msgc_network(
                run.host, run.dataset, run.msgc, run.model_options, steps_per_epoch
            )
        elif run.quantize_aware:
            network, extra = _qat_network(run, steps_per_epoch)
        else:
            network = run.given or build_model(
                run.name, run.dataset, run.depth, **run.model_options
            )
            replicas = strategy.num_replicas_in_sync
            network = with_bn_batch(
                network, bn_group_size(run.recipe, replicas, run.bn_batch)
            )
            network.compile(
                optimizer=make_optimizer(run.recipe, steps_per_epoch),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            extra = []
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            multi_worker_workarounds(network, train_data)
        else:  # before fit traces its step, or it traces it twice
            keras_internals.build_metrics(network, train_data.element_spec)
    return network, extra


def _fit(network, run, snapshot, steps_per_epoch, train_data, stream, eval_data,
         callbacks, verbose):  # fmt: skip
    """`fit` through each phase from the backup to the end (`fit_phases`);
    one `History`. `stream(start=N)` is the training data from batch N."""
    history = None
    with keras_internals.op_determinism():
        for first, last, steps, start in fit_phases(
            snapshot, run.recipe.epochs, steps_per_epoch
        ):
            phase = network.fit(
                train_data if start == 0 else stream(start=start),
                initial_epoch=first, epochs=last, steps_per_epoch=steps,
                validation_data=eval_data, shuffle=False,  # the pipeline shuffles
                callbacks=callbacks, verbose=verbose,
            )  # fmt: skip
            history = _joined(history, phase)
            if network.stop_training:
                break
    return history


def _check_finite(history, run_dir, recipe):
    """A run whose loss became NaN stops unfinished, and says what to do."""
    losses = history.history.get("loss", [])
    if losses and not all(math.isfinite(v) for v in losses):
        epoch = history.epoch[-1] + 1
        raise ValueError(
            f"The training loss became NaN or infinite in epoch {epoch}; the "
            f"run stopped and is not marked finished ({run_dir} keeps the "
            f"last good epoch). Lower the learning rate (it was "
            f"{recipe.learning_rate:g}) and train into a new folder."
        )


def fit_phases(snapshot, epochs, steps_per_epoch):
    """The `fit` calls that take a run from its backup to the end:
    `(initial_epoch, epochs, steps_per_epoch, first batch of the stream)`.

    A backup taken inside an epoch first finishes that epoch (its remaining
    steps), then the other epochs follow; `fit` cannot start mid-epoch.
    """
    epoch, step = (0, 0) if snapshot is None else (snapshot.epoch, snapshot.step)
    phases = []
    if step:
        phases.append((epoch, epoch + 1, steps_per_epoch - step,
                       epoch * steps_per_epoch + step))  # fmt: skip
        epoch += 1
    if epoch < epochs or not phases:
        phases.append((epoch, epochs, steps_per_epoch, epoch * steps_per_epoch))
    return phases


def _joined(history, phase):
    """One `History` of the calls of a resumed run."""
    if history is None:
        return phase
    history.epoch += phase.epoch
    for key, values in phase.history.items():
        history.history.setdefault(key, []).extend(values)
    return history


def _run_seed(seed, snapshot, folder):
    """The run's seed: the one its backup was taken with (a resumed run must
    read the same stream), else `seed`, else a new one."""
    if seed is not None and not is_integer(seed):
        raise ValueError(f"`seed` must be an integer or None. Received: seed={seed!r}.")
    recorded = None if snapshot is None else snapshot.state.get("seed")
    if recorded is not None:
        if seed is not None and seed != recorded:
            raise ValueError(
                f"The run in {folder.root!r} was started with seed={recorded}; "
                f"resuming it with seed={seed} would not continue it. Pass "
                f"--seed {recorded} (or none), or train into another folder."
            )
        return int(recorded)
    if seed is not None:
        return int(seed)
    import secrets

    return secrets.randbelow(2**31)


def _check_snapshot(snapshot, steps_per_epoch, batch_size):
    """The command continues the backup's run: the same batches per epoch,
    of the same size (else every later position would move)."""
    state = {} if snapshot is None else snapshot.state
    for name, value, flag in [
        ("batch_size", batch_size, "--batch-size"),
        ("steps_per_epoch", steps_per_epoch, "--steps-per-epoch"),
    ]:
        wanted = state.get(name)
        if wanted is not None and wanted != value:
            raise ValueError(
                f"The run in {snapshot.path!r} was started with {name}={wanted}; "
                f"resuming it with {name}={value} would not continue it. Pass "
                f"{flag} {wanted}, or train into another folder."
            )


def _refuse_finished(folder):
    """A finished folder is never trained into again; a final model deleted
    or damaged since is rebuilt from the last checkpoint first."""
    problem = folder.finished_model_problem()
    if problem is None:
        raise ValueError(
            f"{folder.root!r} already holds a finished run ({folder.model}); "
            f"training again would overwrite its checkpoints and history. Choose "
            f"another output folder."
        )
    with open(folder.finished) as f:
        epochs = int(json.load(f)["epochs"])
    rebuilt = folder.rebuild_model(epochs)
    if rebuilt is None:
        raise ValueError(
            f"{folder.root!r} holds a finished run (FINISHED), but {problem}, and "
            f"the last epoch's checkpoint {folder.checkpoint(epochs)} is missing "
            f"or does not load either, so it cannot be rebuilt. Train into "
            f"another output folder."
        )
    raise ValueError(
        f"{folder.root!r} already holds a finished run; {problem}, so it was "
        f"rebuilt from {rebuilt} (the same model: both are saved after the last "
        f"step). Choose another output folder to train again."
    )


def _banner(network, run, folder, snapshot):
    """What a run is about to do, before its first epoch."""
    from keras_igc.complexity import model_complexity

    model, dataset = run.name, run.dataset
    schedule = run.recipe if run.msgc is None else run.msgc
    try:
        macs = f", {model_complexity(network)['macs'] / 1e9:.3g} G MACs"
    except ValueError:
        macs = ""
    if isinstance(schedule, Recipe):
        drops = ", ".join(str(b) for b in schedule.boundaries) or "none"
        recipe = (
            f"{schedule.epochs} epochs, batch {schedule.batch_size}, Nesterov SGD "
            f"(coupled decay {schedule.weight_decay:g}) at {schedule.learning_rate:g}"
            f", /10 after epochs {drops}"
        )
        if run.quantize_aware:
            freeze = qat_freeze_epoch(schedule)
            frozen = "never" if freeze is None else f"from epoch {freeze + 1}"
            recipe = (
                f"quantization-aware fine-tune under int8 rounding: {recipe}; "
                f"BatchNorm statistics frozen {frozen}"
            )
    else:
        recipe = (
            f"{schedule.epochs} epochs, batch {schedule.batch_size}, the MSGC "
            f"release's recipe: cosine from {schedule.backbone_learning_rate:g} "
            f"(masks {schedule.mask_learning_rate:g}), MAC target "
            f"{schedule.target:g} by half-way"
        )
    if snapshot is None:
        state = "new run"
    elif snapshot.epoch >= schedule.epochs:
        state = f"all {schedule.epochs} epochs are in {folder.backup}; finishing"
    else:
        step = f", step {snapshot.step + 1}" if snapshot.step else ""
        state = (
            f"resuming at epoch {snapshot.epoch + 1} of {schedule.epochs}{step} "
            f"from {folder.backup}"
        )
    return (
        f"keras-igc: {model} on {dataset}: {network.count_params():,} weights{macs}\n"
        f"keras-igc: {recipe}\n"
        f"keras-igc: {state}; writing {folder.root}"
    )


def _qat_network(run, steps_per_epoch):
    """The given float model made quantization-aware, compiled with the QAT
    recipe, and the callback that freezes its BatchNorm statistics."""
    from keras_igc import quantization

    network = quantization.quantize_aware(run.given)
    network.compile(
        optimizer=make_optimizer(run.recipe, steps_per_epoch),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    freeze = qat_freeze_epoch(run.recipe)
    return network, [] if freeze is None else [quantization.FreezeBatchNorm(freeze)]


def _msgc_network(host, dataset, release, model_options, steps_per_epoch):
    """The host built for `dataset`, compiled with the release's recipe, and
    the callback that lowers its MAC target."""
    from keras_igc import msgc

    spec = data.spec(dataset)
    network = applications.get_model(
        host,
        input_shape=(spec.image_size, spec.image_size, spec.channels),
        classes=spec.classes,
        mac_weight=release.mac_weight,
        **(model_options or {}),
    )
    msgc.compile_for_msgc(
        network, steps_per_epoch, release.epochs,
        mask_learning_rate=release.mask_learning_rate,
        backbone_learning_rate=release.backbone_learning_rate,
        weight_decay=release.weight_decay,
        label_smoothing=release.label_smoothing,
    )  # fmt: skip
    scheduler = msgc.MACTargetScheduler(
        release.target, release.target_fraction,
        total_steps=release.epochs * steps_per_epoch,
    )  # fmt: skip
    return network, [scheduler]


def with_bn_batch(model, bn_batch):
    """`model` with its BatchNormalization layers normalising groups of
    `bn_batch` examples (`GhostBatchNormalization`), weights kept.

    Returns `model` itself when `bn_batch` is None and the current strategy has
    one replica: a plain BatchNormalization then computes the same thing.
    """
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if bn_batch is None and replicas == 1:
        return model

    def clone(layer):
        config = layer.get_config()
        if type(layer) in (keras.layers.BatchNormalization, FusedBatchNormalization):
            config.pop("fused", None)
            return GhostBatchNormalization(virtual_batch_size=bn_batch, **config)
        return type(layer).from_config(config)

    clone_model = keras.models.clone_model(model, clone_function=clone)
    if type(clone_model) is not type(model):
        # clone_model makes a subclass of Sequential a plain Sequential: its
        # own train_step or test_step would be dropped without a word.
        try:
            clone_model = type(model).from_config(clone_model.get_config())
        except Exception as error:
            raise ValueError(
                f"Cannot rebuild {type(model).__name__} {model.name!r} with "
                f"GhostBatchNormalization (bn_batch={bn_batch}) from its config: "
                f"{error}. Pass bn_batch='device' to train it as it is, normalising "
                f"each device's whole batch."
            ) from error
    clone_model.set_weights(model.get_weights())
    return clone_model


def train_stream(
    dataset, batch_size, data_dir=None, download=False, seed=None, recipe="igc",
    start=0,
):  # fmt: skip
    """The training split repeated without end, from its batch `start` on
    (a resumed run starts where the backup left it)."""
    return data.load(
        dataset, "train", batch_size=batch_size, data_dir=data_dir,
        download=download, seed=seed, repeat=True, recipe=recipe, start=start,
    )  # fmt: skip


def fit_data(
    dataset, batch_size, steps_per_epoch=None, data_dir=None, download=False, seed=None,
    recipe="igc",
):  # fmt: skip
    """`(train stream, evaluation split, steps per epoch)` for `model.fit`.

    The training split repeats without end (`train_stream`) and epochs are
    `steps_per_epoch` batches of it (default: the whole split), so a
    shortened epoch never leaves the next one without data.
    """
    load = dict(
        batch_size=batch_size, data_dir=data_dir, download=download, recipe=recipe
    )
    eval_data = data.load(dataset, "eval", **load)
    if steps_per_epoch is None:
        steps_per_epoch = int(data.load(dataset, "train", **load).cardinality())
        if steps_per_epoch < 1:
            raise ValueError(
                f"The {dataset!r} training split has fewer examples than one batch "
                f"of {batch_size}; lower batch_size."
            )
    positive_int(steps_per_epoch, "steps_per_epoch")
    train_data = train_stream(dataset, batch_size, data_dir, download, seed, recipe)
    return train_data, eval_data, steps_per_epoch


def _set_precision(mixed_precision):
    choices = ("auto", "float32", "float64", "mixed_float16", "mixed_bfloat16")
    if mixed_precision not in choices:
        raise ValueError(
            f"`mixed_precision` must be one of {choices}. Received: "
            f"{mixed_precision!r}."
        )
    if mixed_precision == "auto":
        import tensorflow as tf

        gpu = bool(tf.config.list_logical_devices("GPU"))
        mixed_precision = "mixed_float16" if gpu else "float32"
    keras.config.set_dtype_policy(mixed_precision)


def evaluate(model_path, dataset, *, batch_size=None, data_dir=None, download=False):
    """Loss and accuracy of a saved `.keras` model on a dataset's evaluation
    split, with the split's name and size: `{"split", "examples", "loss",
    "accuracy", ...}`."""
    network = load_keras_model(model_path)
    eval_data = data.load(
        dataset, "eval", batch_size=batch_size,
        data_dir=data_dir, download=download,
    )  # fmt: skip
    split, examples = data.split_size(
        dataset, "eval", data_dir=data_dir, download=download
    )
    # Before evaluate traces its step, or it traces it twice.
    keras_internals.build_metrics(network, eval_data.element_spec)
    result = network.evaluate(eval_data, return_dict=True, verbose=0)
    return {"split": f"{dataset} {split}", "examples": examples, **result}
