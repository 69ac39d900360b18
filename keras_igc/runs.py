"""A training run's folder: nothing half-written, nothing lost, one run at a time.

Layout of `output_dir`:

    run.lock             the process training into it (removed at the end)
    backup/              Keras' BackupAndRestore state (the resume point)
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
"""

import contextlib
import csv
import json
import math
import os
import shutil
import socket

import keras

PARTIAL = ".partial"


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
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return holder
        return holder

    def release(self):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.lock_file)

    def clean_partial_files(self):
        """Remove what an interrupted write left, and say so."""
        for folder in (self.root, self.checkpoints):
            if not os.path.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                if PARTIAL in name:
                    os.remove(os.path.join(folder, name))
                    self.announce(
                        f"keras-igc: removed {os.path.join(folder, name)}, left by "
                        f"an interrupted write"
                    )
        if os.path.exists(self.model) and not self.is_finished():
            # Renamed into place, but the run died before checking it loads.
            os.remove(self.model)
            self.announce(
                f"keras-igc: removed {self.model}: the run stopped before marking "
                f"it finished; it is written again at the end"
            )

    def resume_epoch(self):
        """Epochs the backup holds (0 for a new run)."""
        metadata = os.path.join(self.backup, "training_metadata.json")
        try:
            with open(metadata) as f:
                return int(json.load(f)["epoch"])
        except (OSError, ValueError, KeyError):
            return 0

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
            keras.saving.load_model(temporary, compile=False)
        write_text(self.finished, json.dumps({"epochs": epochs}) + "\n")
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.backup)


class AtomicBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore with renamed-into-place files, kept at the end
    (the run folder removes it once the final model is safe), and no backup
    of a diverged epoch."""

    def __init__(self, backup_dir, after_save=None, read_only=False):
        super().__init__(backup_dir, delete_checkpoint=False)
        self.after_save = after_save  # e.g. RunFolder.commit
        # Synchronous replicas hold the same state: the other workers of a
        # multi-worker run restore from the chief's backup and write none, so
        # every worker resumes at the epoch the chief does.
        self.read_only = read_only

    def on_epoch_end(self, epoch, logs=None):
        if _diverged(logs):
            return
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        if self.read_only:
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        with atomic_path(self._weights_path) as temporary:
            self.model.save_weights(temporary, overwrite=True)
        write_text(
            self._training_metadata_path,
            json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}),
        )
        if self.after_save is not None:
            self.after_save()


class RunRecorder(keras.callbacks.Callback):
    """Per epoch: the checkpoint, the history row (epochs from 1) and the plot,
    each renamed into place. Put it before an `AtomicBackup` whose
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
