"""Per epoch: the checkpoint, the history row and the plot."""

import json
import math
import os

import keras

from keras_igc.runs.files import atomic_path, write_text


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
        if diverged(logs):
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


def diverged(logs):
    """Whether an epoch's or step's loss is NaN or infinite: nothing of it is kept."""
    loss = (logs or {}).get("loss")
    return loss is not None and not math.isfinite(float(loss))
