"""Crash-safe training runs: a process killed at the worst moments, then the
same command again, ends with one complete run (TensorFlow only)."""

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import pytest

from keras_igc import runs, training

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.slow]

ARGS = dict(depth=8, epochs=3, batch_size=16, steps_per_epoch=2, seed=0, verbose=0)

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
        original_save_model = runs.AtomicBackup._save_model
        def save_model(self):
            if self._current_epoch == 2:  # epochs done: 2
                die()
            original_save_model(self)
        runs.AtomicBackup._save_model = save_model

    training.train("RegConv-W16", "digits", out, **{args})
    """
).replace("{args}", repr(ARGS))


def killed_run(out, where):
    process = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), where],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert process.returncode == -9, process.stderr[-3000:]


def assert_complete(out):
    with open(out / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2, 3]
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
    ],
)
def test_a_killed_run_completes_when_run_again(tmp_path, where, said, capsys):
    out = tmp_path / "run"
    killed_run(out, where)
    assert not (out / "FINISHED").exists()
    training.train("RegConv-W16", "digits", str(out), **ARGS)
    assert said in capsys.readouterr().out
    assert_complete(out)


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    folder = runs.RunFolder(str(out))
    folder.check_writable()
    folder.acquire()  # as a run in progress in this very process would
    try:
        with pytest.raises(ValueError, match="in use by another training run"):
            training.train("RegConv-W16", "digits", str(out), **ARGS)
    finally:
        folder.release()
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
