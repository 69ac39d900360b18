"""A training run's folder: nothing half-written, nothing lost, one run at a time.

Layout of `output_dir`:

    run.lock             the process training into it (removed at the end)
    backup/step-NNNNNNNNN/   the newest two resume points, after that many
                         steps: weights and optimizer, random generators,
                         the epoch's metric totals, the data stream position
    checkpoints/epoch-NNN.keras
    history.csv          one row per finished epoch, epochs counted from 1
    curves.png
    model.keras          the final model
    FINISHED             written last, after model.keras loads back

Every file goes to a temporary name beside its target and is renamed into
place (`atomic_path`), so a kill leaves either the old file or the new one. At
the end of an epoch the checkpoint and a pending history row are written, then
the backup, then the row joins `history.csv`: a rerun resumes from the backup,
commits a pending row whose epoch the backup holds, and drops the files of an
epoch it does not hold (that epoch is trained again; the output says so).
Backups are also taken inside epochs (`RunBackup`'s `every`); each one is a
folder renamed into place, so the newest whole one is the resume point. The
one before it is kept too: if the newest is damaged later, the run resumes
from the previous one and says so.
"""

import contextlib
import csv
import dataclasses
import json
import math
import os
import shutil
import socket
import time

import keras
import numpy as np

from keras_igc import keras_internals
from keras_igc.saving import load_keras_model
from keras_igc.validation import positive_int

PARTIAL = ".partial"
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


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renamed onto it on success.

    The temporary name keeps the file's extension (`x.keras` ->
    `x.partial.keras`) so writers that dispatch on it still work.
    """
    root, extension = os.path.splitext(path)
    if root.endswith(".weights"):  # Keras' double extension
        root, extension = root[: -len(".weights")], ".weights" + extension
    temporary = f"{root}{PARTIAL}{extension}"
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def process_alive(pid):
    """Whether a process `pid` runs on this machine (one of another user's
    counts: it cannot be signalled, but it is there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_text(path, text):
    with atomic_path(path) as temporary:
        with open(temporary, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


class RunFolder:
    """The files of one training run, and what state they are in."""

    def __init__(self, output_dir, announce=print):
        self.root = output_dir
        self.announce = announce
        self._announced = set()  # damaged backups already reported
        self.model = os.path.join(output_dir, "model.keras")
        self.finished = os.path.join(output_dir, "FINISHED")
        self.backup = os.path.join(output_dir, "backup")
        self.checkpoints = os.path.join(output_dir, "checkpoints")
        self.history = os.path.join(output_dir, "history.csv")
        self.plot = os.path.join(output_dir, "curves.png")
        self.pending = os.path.join(output_dir, "history.pending.json")
        self.lock_file = os.path.join(output_dir, "run.lock")

    def check_writable(self):
        """A clear error for an output path that cannot hold a run."""
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise ValueError(
                f"The output folder {self.root!r} is a file; pass a folder path "
                f"(it is created if missing)."
            )
        if not self.root:
            raise ValueError("The output folder is empty; pass a folder path.")
        try:
            os.makedirs(self.root, exist_ok=True)
            probe = os.path.join(self.root, f".write-test{PARTIAL}")
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as error:
            raise ValueError(
                f"Cannot write into the output folder {self.root!r} "
                f"({error.strerror}); pass a folder you can write to."
            ) from error

    def is_finished(self):
        return os.path.isfile(self.finished)

    def acquire(self):
        """Take the run's lock, or refuse: another process trains here."""
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        for _ in range(2):
            try:
                fd = os.open(self.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self._lock_holder()
                if holder is not None:
                    raise ValueError(
                        f"{self.root!r} is in use by another training run (process "
                        f"{holder['pid']} on {holder['host']}). Wait for it to end, "
                        f"or train into another output folder."
                    ) from None
                self.announce(
                    f"keras-igc: removing the stale lock of a run that died "
                    f"({self.lock_file})"
                )
                os.remove(self.lock_file)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(record)
            return
        raise ValueError(f"Could not lock {self.lock_file!r}; remove it by hand.")

    def _lock_holder(self):
        """The live process holding the lock, or None if it is stale."""
        try:
            with open(self.lock_file) as f:
                holder = json.load(f)
        except (OSError, ValueError):
            return None  # a lock written halfway: its writer died
        if holder.get("host") != socket.gethostname():
            return holder  # cannot tell: assume it is alive
        return holder if process_alive(int(holder["pid"])) else None

    def release(self):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.lock_file)

    def clean_partial_files(self):
        """Remove what an interrupted write left, and say so."""
        for folder in (self.root, self.checkpoints, self.backup):
            if not os.path.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                if PARTIAL in name:
                    path = os.path.join(folder, name)
                    _remove(path)
                    self.announce(
                        f"keras-igc: removed {path}, left by an interrupted write"
                    )
        if os.path.exists(self.model) and not self.is_finished():
            # Renamed into place, but the run died before checking it loads.
            os.remove(self.model)
            self.announce(
                f"keras-igc: removed {self.model}: the run stopped before marking "
                f"it finished; it is written again at the end"
            )

    def latest_snapshot(self):
        """The newest whole backup (`Snapshot`), or None for a new run.

        A backup damaged since it was written (its weights file no longer
        reads) is passed over for the previous one, which `RunBackup` keeps,
        and the output says so; with none before it, a ValueError names it.
        """
        damaged = []
        for step in reversed(self._snapshot_steps()):
            path = os.path.join(self.backup, f"{SNAPSHOT}{step:09d}")
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
                f"or remove {self.backup} to train this run again from its start."
            )
        legacy = os.path.join(self.backup, "training_metadata.json")
        if os.path.isfile(legacy):  # Keras' BackupAndRestore: keras-igc 0.1.0
            with open(legacy) as f:
                epoch = int(json.load(f)["epoch"])
            weights = os.path.join(self.backup, "latest.weights.h5")
            return Snapshot(self.backup, epoch, 0, {}, weights)
        return None

    def _snapshot_steps(self):
        """The steps of the whole backups, oldest first."""
        names = os.listdir(self.backup) if os.path.isdir(self.backup) else []
        return sorted(
            int(name[len(SNAPSHOT) :])
            for name in names
            if name.startswith(SNAPSHOT) and name[len(SNAPSHOT) :].isdigit()
        )

    def finished_model_problem(self):
        """What is wrong with a finished run's `model.keras` (None if it
        loads): a finished folder whose model was deleted or damaged since."""
        if not os.path.isfile(self.model):
            return "its model.keras is missing"
        try:
            keras.saving.load_model(self.model, compile=False)
        except Exception as error:  # a damaged archive raises many types
            return (
                f"its model.keras does not load ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200] if str(error) else ''})"
            )
        return None

    def rebuild_model(self, epochs):
        """Write `model.keras` again from the last epoch's checkpoint (the
        same model: both are saved after the last step). Returns the
        checkpoint's path, or None if it is missing or does not load."""
        checkpoint = self.checkpoint(epochs)
        if not os.path.isfile(checkpoint):
            return None
        try:
            keras.saving.load_model(checkpoint, compile=False)
        except Exception:
            return None
        with atomic_path(self.model) as temporary:
            shutil.copyfile(checkpoint, temporary)
        return checkpoint

    def history_rows(self):
        if not os.path.isfile(self.history):
            return []
        with open(self.history, newline="") as f:
            return list(csv.DictReader(f))

    def write_history(self, rows):
        if not rows:
            return
        fields = ["epoch", *sorted({k for row in rows for k in row} - {"epoch"})]
        with atomic_path(self.history) as temporary:
            with open(temporary, "w", newline="") as f:
                writer = csv.DictWriter(f, fields)
                writer.writeheader()
                writer.writerows(rows)

    def checkpoint(self, epoch):
        return os.path.join(self.checkpoints, f"epoch-{epoch:03d}.keras")

    def commit(self):
        """Move the pending history row (its epoch's backup is saved) into
        `history.csv`."""
        if not os.path.isfile(self.pending):
            return
        with open(self.pending) as f:
            row = json.load(f)
        rows = [r for r in self.history_rows() if int(r["epoch"]) != row["epoch"]]
        self.write_history(rows + [row])
        os.remove(self.pending)

    def settle(self, epoch):
        """Make the files agree with a backup that holds `epoch` epochs:
        commit a pending row it holds, drop what it does not."""
        if os.path.isfile(self.pending):
            with open(self.pending) as f:
                pending = json.load(f)["epoch"]
            if pending <= epoch:
                self.commit()
            else:
                os.remove(self.pending)
        rows = self.history_rows()
        kept = [row for row in rows if int(row["epoch"]) <= epoch]
        dropped = {int(row["epoch"]) for row in rows} - {int(r["epoch"]) for r in kept}
        if os.path.isdir(self.checkpoints):
            for name in os.listdir(self.checkpoints):
                number = name[len("epoch-") : -len(".keras")]
                if number.isdigit() and int(number) > epoch:
                    os.remove(os.path.join(self.checkpoints, name))
                    dropped.add(int(number))
        if len(kept) != len(rows):
            self.write_history(kept)
        if dropped:
            self.announce(
                f"keras-igc: epoch(s) {sorted(dropped)} had files but no saved "
                f"training state; training them again"
            )

    def finish(self, network, epochs):
        """Write the final model, check it loads, then the FINISHED marker."""
        with atomic_path(self.model) as temporary:
            network.save(temporary)
            # Loaded as a user will load it: with its compile state.
            load_keras_model(temporary)
        write_text(self.finished, json.dumps({"epochs": epochs}) + "\n")
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.backup)


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
            batch size), returned by `folder.latest_snapshot().state`.
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
            snapshot = self.folder.latest_snapshot()
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
        if step >= self.steps_per_epoch or _diverged(logs):
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
        if not _diverged(logs):
            self.save(epoch + 1, 0)

    def save(self, epoch, step):
        if self.read_only:
            return
        position = epoch * self.steps_per_epoch + step
        final = os.path.join(self.folder.backup, f"{SNAPSHOT}{position:09d}")
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
        earlier = [s for s in self.folder._snapshot_steps() if s < position]
        if earlier:
            keep.add(os.path.join(self.folder.backup, f"{SNAPSHOT}{earlier[-1]:09d}"))
        for name in os.listdir(self.folder.backup):
            path = os.path.join(self.folder.backup, name)
            if path not in keep and PARTIAL not in name:
                _remove(path)
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


def _remove(path):
    """A file, or a folder with everything in it."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def _metric_variables(model):
    return [variable for metric in model.metrics for variable in metric.variables]


class RunRecorder(keras.callbacks.Callback):
    """Per epoch: the checkpoint, the history row (epochs from 1) and the plot,
    each renamed into place. Put it before a `RunBackup` whose
    `after_save` is the folder's `commit`."""

    def __init__(self, folder, plot=None):
        super().__init__()
        self.folder = folder
        self.plot = plot  # plot(csv_path, png_path) or None
        self._first = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first:  # after the backup was restored: `epoch` is where we are
            self.folder.settle(epoch)
            self._first = False
        self._plot()

    def on_epoch_end(self, epoch, logs=None):
        if _diverged(logs):
            return  # nothing of a diverged epoch is kept
        os.makedirs(self.folder.checkpoints, exist_ok=True)
        with atomic_path(self.folder.checkpoint(epoch + 1)) as temporary:
            self.model.save(temporary)
        row = {"epoch": epoch + 1, **{k: _plain(v) for k, v in (logs or {}).items()}}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and "learning_rate" not in row:
            row["learning_rate"] = _plain(optimizer.learning_rate)
        write_text(self.folder.pending, json.dumps(row))

    def on_train_end(self, logs=None):
        self._plot()

    def _plot(self):
        if self.plot is not None and self.folder.history_rows():
            with atomic_path(self.folder.plot) as temporary:
                self.plot(self.folder.history, temporary)


def _plain(value):
    try:
        return float(keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return value


def _diverged(logs):
    loss = (logs or {}).get("loss")
    return loss is not None and not math.isfinite(float(loss))
