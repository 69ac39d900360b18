"""Crash-safe training runs: a process killed at the worst moments, then the
same command again, ends with one complete run, and with the weights and
history of the run that was never killed (TensorFlow only)."""

import csv
import json
import os
import socket
import sys
import textwrap

import fresh_process
import keras
import numpy as np
import pytest

from keras_igc import runs, training

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.slow]

# Backups every 2 steps of 4: at 2 inside each epoch and at each epoch end.
ARGS = dict(
    depth=8, epochs=3, batch_size=16, steps_per_epoch=4, seed=0, verbose=0,
    backup_every=2,
)  # fmt: skip

# The child trains and kills itself (SIGKILL: no cleanup runs) at one point.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    from keras_igc import runs, training

    out, where = sys.argv[1], sys.argv[2]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)

    if where == "after-training":  # every epoch done, final model not written
        original = runs.RunFolder.finish
        runs.RunFolder.finish = lambda self, network, epochs: die()
    if where in ("model-half-written", "checkpoint-opened"):
        original_save = keras.Model.save
        def save(self, path, *args, **kwargs):
            name = os.path.basename(str(path))
            if (where == "model-half-written" and name.startswith("model")) or (
                where == "checkpoint-opened" and name.startswith("epoch-002")
            ):
                with open(path, "wb") as f:  # the temporary file, half written
                    f.write(b"PK\\x03\\x04" if where == "model-half-written" else b"")
                die()
            return original_save(self, path, *args, **kwargs)
        keras.Model.save = save
    if where == "between-checkpoint-and-backup":
        original_backup = runs.RunBackup.save
        def save(self, epoch, step):
            if (epoch, step) == (2, 0):  # the backup of epoch 2's end
                die()
            original_backup(self, epoch, step)
        runs.RunBackup.save = save
    if where == "backup-half-written":  # inside epoch 2, step 2's backup
        original_save_weights = keras.Model.save_weights
        def save_weights(self, path, *args, **kwargs):
            original_save_weights(self, path, *args, **kwargs)
            if "step-000000006" in str(path):
                die()
        keras.Model.save_weights = save_weights
    callbacks = []
    if where == "mid-epoch":  # step 3 of epoch 2, after step 2's backup
        class Kill(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(self.model.optimizer.iterations) == 7:
                    die()
        callbacks = [Kill()]

    training.train("RegConv-W16", "digits", out, callbacks=callbacks, **{args})
    """
).replace("{args}", repr(ARGS))


def killed_run(out, where, child=CHILD):
    process = fresh_process.run(
        [sys.executable, "-c", child, out, where], cwd=os.getcwd(), timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert process.returncode == -9, process.stderr[-3000:]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run that is never killed: what every resumed run must end with."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    training.train("RegConv-W16", "digits", str(out), **ARGS)
    return out


def history(out):
    with open(out / "history.csv") as f:
        return list(csv.DictReader(f))


def weights(path):
    model = keras.saving.load_model(path, safe_mode=True)
    return model, [keras.ops.convert_to_numpy(w) for w in model.weights]


def assert_same_run(out, reference):
    """The same weights (within 1e-6 of the largest) and the same history
    as the reference run."""
    _, got = weights(out / "model.keras")
    _, wanted = weights(reference / "model.keras")
    scale = max(float(np.max(np.abs(w))) for w in wanted)
    for x, y in zip(got, wanted, strict=True):
        assert np.max(np.abs(x - y)) <= 1e-6 * scale
    rows, wanted_rows = history(out), history(reference)
    assert [r.keys() for r in rows] == [r.keys() for r in wanted_rows]
    for row, wanted_row in zip(rows, wanted_rows, strict=True):
        for key, value in wanted_row.items():
            assert float(row[key]) == pytest.approx(float(value), rel=1e-6), key


def assert_complete(out):
    assert [int(row["epoch"]) for row in history(out)] == [1, 2, 3]
    for epoch in (1, 2, 3):
        keras.saving.load_model(out / "checkpoints" / f"epoch-{epoch:03d}.keras")
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    assert int(model.optimizer.iterations) == 3 * ARGS["steps_per_epoch"]
    assert (out / "FINISHED").is_file() and not (out / "backup").exists()
    assert not (out / "run.lock").exists()
    leftovers = [p for p in out.rglob("*") if runs.PARTIAL in p.name]
    assert not leftovers


@pytest.mark.parametrize(
    "where, said",
    [
        ("after-training", "all 3 epochs are in"),
        ("model-half-written", "model.partial.keras, left by an interrupted write"),
        ("checkpoint-opened", "epoch-002.partial.keras, left by an interrupted"),
        ("between-checkpoint-and-backup", "epoch(s) [2] had files but no saved"),
        ("mid-epoch", "resuming at epoch 2 of 3, step 3"),
        ("backup-half-written", "step-000000006.partial, left by an interrupted"),
    ],
)
def test_a_killed_run_ends_as_the_uninterrupted_run(
    tmp_path, where, said, capsys, uninterrupted
):
    out = tmp_path / "run"
    killed_run(out, where)
    assert not (out / "FINISHED").exists()
    training.train("RegConv-W16", "digits", str(out), **ARGS)
    assert said in capsys.readouterr().out
    assert_complete(out)
    assert_same_run(out, uninterrupted)


def test_a_damaged_newest_backup_resumes_from_the_previous_one(
    tmp_path, capsys, uninterrupted
):
    """Killed at step 7: the backups of steps 4 and 6 are kept. Step 6's
    weights file damaged since (it once raised h5py's raw OSError on
    restart): the run resumes from step 4, says so, and ends as the
    uninterrupted run."""
    out = tmp_path / "run"
    killed_run(out, "mid-epoch")
    backups = sorted(p.name for p in (out / "backup").iterdir())
    assert backups == ["step-000000004", "step-000000006"]
    damaged = out / "backup" / "step-000000006" / runs.WEIGHTS
    damaged.write_bytes(b"not an HDF5 file")
    training.train("RegConv-W16", "digits", str(out), **ARGS)
    said = capsys.readouterr().out
    assert f"the newest backup {damaged} is damaged" in said
    assert "resuming from the previous one" in said and "step-000000004" in said
    assert "resuming at epoch 2 of 3" in said
    assert_complete(out)
    assert_same_run(out, uninterrupted)


def test_a_damaged_only_backup_is_named(tmp_path):
    folder = runs.RunFolder(str(tmp_path))
    backup = tmp_path / "backup" / "step-000000004"
    backup.mkdir(parents=True)
    (backup / runs.STATE).write_text(json.dumps({"epoch": 1, "step": 0}))
    (backup / runs.WEIGHTS).write_bytes(b"")
    with pytest.raises(ValueError) as error:
        folder.backups.latest()
    message = str(error.value)
    assert str(backup / runs.WEIGHTS) in message and "is damaged" in message
    assert "no earlier whole backup" in message and "another folder" in message


def test_another_seed_gives_other_weights(tmp_path, uninterrupted):
    # That the same seed gives the same weights, every killed run above shows:
    # each starts afresh in its own process and ends as the uninterrupted run.
    other = tmp_path / "other"
    # One epoch is enough to differ: the initial weights already do.
    training.train("RegConv-W16", "digits", str(other), **dict(ARGS, seed=1, epochs=1))
    _, a = weights(other / "checkpoints" / "epoch-001.keras")
    _, b = weights(uninterrupted / "checkpoints" / "epoch-001.keras")
    assert any(not np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    folder = runs.RunFolder(str(out))
    folder.check_writable()
    folder.lock.acquire()  # as a run in progress in this very process would
    try:
        with pytest.raises(ValueError, match="in use by another training run"):
            training.train("RegConv-W16", "digits", str(out), **ARGS)
    finally:
        folder.lock.release()
    assert not (out / "history.csv").exists()


def test_a_stale_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    stale = {"pid": 999999999, "host": socket.gethostname()}
    (out / "run.lock").write_text(json.dumps(stale))
    training.train("RegConv-W16", "digits", str(out), **dict(ARGS, epochs=1))
    assert "stale lock" in capsys.readouterr().out


def test_a_diverging_run_stops_and_is_not_finished(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="became NaN.*epoch 1.*not marked finished"):
        training.train(
            "RegConv-W16", "digits", str(out), **dict(ARGS, learning_rate=1e30)
        )
    assert not (out / "FINISHED").exists() and not (out / "model.keras").exists()


@pytest.mark.parametrize("kind", ["file", "read-only", "empty"])
def test_an_output_that_cannot_hold_a_run_is_named(tmp_path, kind):
    if kind == "empty":
        out, message = "", "output folder is empty"
    elif kind == "file":
        out = tmp_path / "taken"
        out.write_text("x")
        message = "is a file"
    else:
        if os.geteuid() == 0:
            out, message = "/proc/keras-igc-run", "Cannot write into"
        else:
            locked = tmp_path / "locked"
            locked.mkdir(mode=0o500)
            out, message = locked / "run", "Cannot write into"
    with pytest.raises(ValueError, match=message):
        training.train("RegConv-W16", "digits", str(out), **ARGS)


# A network of the user's whose training draws random numbers (dropout): its
# generator's state is part of what a resume restores.
DROPOUT_NETWORK = textwrap.dedent(
    """
    import keras

    def dropout_network():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((32, 32, 1))
        x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
        x = keras.layers.Dropout(0.5)(keras.layers.Flatten()(x))
        outputs = keras.layers.Dense(10, activation="softmax")(x)
        return keras.Model(inputs, outputs)
    """
)
DROPOUT_CHILD = DROPOUT_NETWORK + textwrap.dedent(
    """
    import os, signal, sys
    from keras_igc import training

    class Kill(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations) == 7:
                os.kill(os.getpid(), signal.SIGKILL)

    training.train(
        dropout_network(), "digits", sys.argv[1], callbacks=[Kill()], **{args}
    )
    """
).replace("{args}", repr({k: v for k, v in ARGS.items() if k != "depth"}))


def test_a_killed_run_with_dropout_continues_its_random_stream(tmp_path):
    scope = {}
    exec(DROPOUT_NETWORK, scope)
    args = {k: v for k, v in ARGS.items() if k != "depth"}
    reference = tmp_path / "uninterrupted"
    training.train(scope["dropout_network"](), "digits", str(reference), **args)
    out = tmp_path / "run"
    killed_run(out, "mid-epoch", DROPOUT_CHILD)
    training.train(scope["dropout_network"](), "digits", str(out), **args)
    assert_same_run(out, reference)
