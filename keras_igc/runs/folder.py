"""A training run's folder: its layout, history and final model."""

import contextlib
import csv
import json
import os
import shutil

import keras

from keras_igc.runs.backups import Backups
from keras_igc.runs.files import PARTIAL, atomic_path, remove, write_text
from keras_igc.runs.lock import RunLock
from keras_igc.saving import load_keras_model


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
        self.lock = RunLock(os.path.join(output_dir, "run.lock"), output_dir, announce)
        self.backups = Backups(self.backup, self.checkpoints, announce)

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

    def clean_partial_files(self):
        """Remove what an interrupted write left, and say so."""
        for folder in (self.root, self.checkpoints, self.backup):
            if not os.path.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                if PARTIAL in name:
                    path = os.path.join(folder, name)
                    remove(path)
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
