"""A run's backups: the resume points inside `backup/`, and the callback
that writes them and restores the newest at the start of `fit`."""

import dataclasses
import json
import os
import shutil
import time

import keras
import numpy as np

from keras_igc import keras_internals
from keras_igc.runs.files import PARTIAL, remove, write_text
from keras_igc.runs.recorder import diverged
from keras_igc.validation import positive_int

SNAPSHOT = "step-"  # backup/step-NNNNNNNNN: the state after that many steps
WEIGHTS = "weights.weights.h5"
STATE = "state.json"
# The default time between backups inside an epoch: an ImageNet epoch is
# hours, and a ResNet-50 backup (weights and momentum) takes seconds.
BACKUP_SECONDS = 600


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A whole backup: `epoch` epochs and `step` steps of the next one done."""

    path: str
    epoch: int
    step: int
    state: dict
    weights: str  # the weights and optimizer file


class Backups:
    """The whole backups in a run's `backup/` folder, newest last.

    Args:
        root: the backup folder.
        checkpoints: the run's checkpoint folder, for messages.
        announce: prints what the store does on its own (passing over a
            damaged backup).
    """

    def __init__(self, root, checkpoints, announce=print):
        self.root, self.checkpoints, self.announce = root, checkpoints, announce
        self._announced = set()  # damaged backups already reported

    def path(self, step):
        """The folder of the backup after `step` steps."""
        return os.path.join(self.root, f"{SNAPSHOT}{step:09d}")

    def latest(self):
        """The newest whole backup (`Snapshot`), or None for a new run.

        A backup damaged since it was written (its weights file no longer
        reads) is passed over for the previous one, which `RunBackup` keeps,
        and the output says so; with none before it, a ValueError names it.
        """
        damaged = []
        for step in reversed(self.steps()):
            path = self.path(step)
            weights = os.path.join(path, WEIGHTS)
            try:
                with open(os.path.join(path, STATE)) as f:
                    state = json.load(f)
            except (OSError, ValueError):
                continue  # renamed into place whole: only a hand edit does this
            if not os.path.isfile(weights):
                continue
            problem = _unreadable(weights)
            if problem is not None:
                damaged.append((weights, problem))
                continue
            if damaged and damaged[0][0] not in self._announced:
                self._announced.add(damaged[0][0])
                self.announce(
                    f"keras-igc: the newest backup {damaged[0][0]} is damaged "
                    f"({damaged[0][1]}); resuming from the previous one, {path}"
                )
            return Snapshot(path, state["epoch"], state["step"], state, weights)
        if damaged:
            weights, problem = damaged[0]
            raise ValueError(
                f"The run's backup {weights} is damaged ({problem}) and there is "
                f"no earlier whole backup to resume from. Train into another "
                f"folder ({self.checkpoints} keeps the finished epochs' models), "
                f"or remove {self.root} to train this run again from its start."
            )
        legacy = os.path.join(self.root, "training_metadata.json")
        if os.path.isfile(legacy):  # Keras' BackupAndRestore: keras-igc 0.1.0
            with open(legacy) as f:
                epoch = int(json.load(f)["epoch"])
            weights = os.path.join(self.root, "latest.weights.h5")
            return Snapshot(self.root, epoch, 0, {}, weights)
        return None

    def steps(self):
        """The steps of the whole backups, oldest first."""
        names = os.listdir(self.root) if os.path.isdir(self.root) else []
        return sorted(
            int(name[len(SNAPSHOT) :])
            for name in names
            if name.startswith(SNAPSHOT) and name[len(SNAPSHOT) :].isdigit()
        )


class RunBackup(keras.callbacks.Callback):
    """Backs a run up, and restores it exactly at the start of `fit`.

    A backup (`backup/step-N/`, written under a temporary name and renamed
    into place) holds what the next step depends on beyond the data: the
    weights and the optimizer's state, the states of the layers' random
    generators (`save_weights` leaves them out), the epoch's metric totals
    (so the resumed epoch logs what the whole epoch would have), and the
    position, `epoch` epochs and `step` steps into the next. With the data
    stream started at that position (`data.load(..., start=...)`) the
    resumed run takes the uninterrupted run's steps.

    Backups are taken at every epoch end and, inside epochs, every `every`
    steps (an int), every `BACKUP_SECONDS` (None) or never ("epoch"). One
    `fit` call may start mid-epoch: its `steps` are then the epoch's
    remaining steps.

    Args:
        folder: the `RunFolder` whose backup is read and written.
        steps_per_epoch: the run's steps per epoch.
        every: see above.
        state: more plain values to store with each backup (the seed, the
            batch size), returned by `folder.backups.latest().state`.
        after_save: called after each backup (`RunFolder.commit`).
        read_only: restore but never write (the other workers of a
            multi-worker run restore from the chief's backup).
        element_spec: the training data's; lets the metrics be built (and
            their totals restored) before the first step.
    """

    def __init__(
        self, folder, steps_per_epoch, every=None, *, state=None, after_save=None,
        read_only=False, element_spec=None,
    ):  # fmt: skip
        super().__init__()
        self.folder = folder
        self.steps_per_epoch = positive_int(steps_per_epoch, "steps_per_epoch")
        if every not in (None, "epoch"):
            positive_int(every, "backup_every")
        self.every = every
        self.state = dict(state or {})
        self.after_save = after_save
        self.read_only = read_only
        self.element_spec = element_spec
        self._restored = False
        self._metrics = None  # the resumed epoch's totals, set at its start
        self._epoch = 0
        self._offset = 0

    def on_train_begin(self, logs=None):
        self._offset = self.steps_per_epoch - (self.params.get("steps") or 0)
        self._last_save = time.monotonic()
        if not self._restored:
            self._restored = True
            snapshot = self.folder.backups.latest()
            if snapshot is not None:
                self._restore(snapshot)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._metrics is not None:  # after fit reset them for this epoch
            variables = _metric_variables(self.model)
            for variable, value in zip(variables, self._metrics, strict=True):
                variable.assign(np.asarray(value, variable.dtype))
            self._metrics = None

    def on_train_batch_end(self, batch, logs=None):
        step = self._offset + batch + 1
        if step >= self.steps_per_epoch or diverged(logs):
            return  # the epoch's end saves
        if self.every is None:
            due = time.monotonic() - self._last_save >= BACKUP_SECONDS
        elif self.every == "epoch":
            due = False
        else:
            due = (self._epoch * self.steps_per_epoch + step) % self.every == 0
        if due:
            self.save(self._epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        self._offset = 0  # only the first epoch of a call starts mid-way
        if not diverged(logs):
            self.save(epoch + 1, 0)

    def save(self, epoch, step):
        if self.read_only:
            return
        position = epoch * self.steps_per_epoch + step
        store = self.folder.backups
        final = store.path(position)
        temporary = final + PARTIAL
        for stale in (temporary, final):
            if os.path.exists(stale):
                shutil.rmtree(stale)
        os.makedirs(temporary)
        self.model.save_weights(os.path.join(temporary, WEIGHTS))
        state = {
            **self.state,
            "epoch": epoch,
            "step": step,
            "steps_per_epoch": self.steps_per_epoch,
            "seed_generators": [
                keras.ops.convert_to_numpy(g.state).tolist()
                for g in keras_internals.seed_generators(self.model)
            ],
            # Per-replica totals cannot be read back into one replica each.
            "metrics": [
                keras.ops.convert_to_numpy(v).tolist()
                for v in _metric_variables(self.model)
            ]
            if step and self.model.distribute_strategy.num_replicas_in_sync == 1
            else None,
        }
        write_text(os.path.join(temporary, STATE), json.dumps(state))
        os.rename(temporary, final)
        # The previous backup stays: the resume point if this one is damaged
        # later (a disk error, a copy cut short).
        keep = {final}
        earlier = [s for s in store.steps() if s < position]
        if earlier:
            keep.add(store.path(earlier[-1]))
        for name in os.listdir(store.root):
            path = os.path.join(store.root, name)
            if path not in keep and PARTIAL not in name:
                remove(path)
        self._last_save = time.monotonic()
        if self.after_save is not None:
            self.after_save()

    def _restore(self, snapshot):
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(snapshot.weights)
        generators = keras_internals.seed_generators(self.model)
        states = snapshot.state.get("seed_generators")
        if states is not None:
            if len(states) != len(generators):
                raise ValueError(
                    f"The backup in {snapshot.path} holds {len(states)} random "
                    f"generator states; this model has {len(generators)}. It was "
                    f"taken from another network: train into another folder."
                )
            for generator, value in zip(generators, states, strict=True):
                generator.state.assign(np.asarray(value, generator.state.dtype))
        self._metrics = snapshot.state.get("metrics") if snapshot.step else None
        if self._metrics is not None and self.element_spec is not None:
            keras_internals.build_metrics(self.model, self.element_spec)


def _unreadable(weights):
    """What is wrong with a backup's weights file, or None if it reads."""
    import h5py

    try:
        with h5py.File(weights, "r") as f:
            f.visit(lambda name: None)
    except OSError as error:
        return str(error)
    return None


def _metric_variables(model):
    return [variable for metric in model.metrics for variable in metric.variables]
