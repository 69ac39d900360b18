"""Scale-out that has run: MirroredStrategy over two logical CPU devices, and
MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1, including
a worker killed mid-epoch and the run resumed. Everything runs in child
processes: TensorFlow fixes its devices and collectives when it starts."""

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_igc  # noqa: F401  (registers the layers the saved models hold)

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.slow]

# Eight steps of 32 digits under MirroredStrategy over two logical CPUs, and
# the same on one device with BatchNorm statistics over the same two
# halves of each batch. In float64: in float32 this network's first steps
# amplify rounding differences (a 1e-7 change of the initial weights grows to
# about 0.6 relative after an epoch of 44 steps at lr 0.1), which would hide what the
# comparison is about.
MIRRORED = """
import sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
import keras
from keras_igc import training

out = sys.argv[1]
for name, strategy in [
    ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
    ("single", tf.distribute.get_strategy()),
]:
    keras.utils.set_random_seed(0)
    model, _ = training.train(
        "IGC-L24M2", "digits", f"{out}/{name}", depth=8, epochs=1, batch_size=32,
        steps_per_epoch=8, seed=0, verbose=0, mixed_precision="float64", bn_batch=16,
        strategy=strategy,
    )
    print(name, "replicas", strategy.num_replicas_in_sync)
"""


def _environment(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _weights(path):
    model = keras.saving.load_model(path, safe_mode=True)
    return model, [keras.ops.convert_to_numpy(w) for w in model.weights]


def _history_epochs(path):
    with open(path) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_mirrored_over_two_cpus_equals_one_device(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(tmp_path)],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mirrored replicas 2" in result.stdout
    mirrored, a = _weights(tmp_path / "mirrored" / "model.keras")
    single, b = _weights(tmp_path / "single" / "model.keras")
    assert int(mirrored.optimizer.iterations) == int(single.optimizer.iterations) == 8
    for weight, x, y in zip(mirrored.weights, a, b, strict=True):
        error = np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-12)
        assert error < 1e-5, (weight.path, error)
    # The moving statistics are the same on both replicas (Keras' own
    # BatchNormalization leaves each replica with its half's).
    norms = [w.path for w in mirrored.weights if "moving_mean" in w.path]
    assert norms and all(
        type(layer).__name__ == "GhostBatchNormalization"
        for layer in mirrored.layers
        if "bn" in layer.name
    )


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# Exactly what docs/training.md's multi-machine section shows, on one machine.
TRAIN = [
    "train", "--model", "IGC-L24M2", "--dataset", "digits", "--depth", "8",
    "--epochs", "3", "--steps-per-epoch", "12", "--batch-size", "32", "--seed", "0",
    "--backup-every", "4",
]  # fmt: skip


def _start_workers(output, ports, logs):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(len(ports)):
        config = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        log = open(logs / f"worker-{index}-{len(list(logs.iterdir()))}.log", "w")
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "keras_igc.cli", *TRAIN, "--output", output],
                env=_environment(TF_CONFIG=config),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return workers


def _wait(workers, timeout):
    deadline = time.monotonic() + timeout
    try:
        return [w.wait(timeout=max(1, deadline - time.monotonic())) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()


def test_two_workers_on_loopback_train_resume_after_a_kill_and_agree(tmp_path):
    output, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    # The run that is never killed, to compare the resumed one with.
    uninterrupted = tmp_path / "uninterrupted"
    workers = _start_workers(str(uninterrupted), _free_ports(2), logs)
    assert _wait(workers, timeout=300) == [0, 0], _logs(logs)
    ports = _free_ports(2)
    workers = _start_workers(str(output), ports, logs)
    history = output / "history.csv"
    # Wait for the chief's backup at step 4 of epoch 2, then kill worker 1.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if any(w.poll() is not None for w in workers):
            break
        if (output / "backup" / "step-000000016").exists():
            break
        time.sleep(0.02)
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait()
    done_before_kill = _history_epochs(history)
    assert done_before_kill == [1], (done_before_kill, _logs(logs))
    # The chief now waits on a collective that will never come: stop it too.
    time.sleep(1)
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    assert not (output / "model.keras").exists()

    # The same command on both workers (new ports) resumes from the backups.
    workers = _start_workers(str(output), _free_ports(2), logs)
    assert _wait(workers, timeout=300) == [0, 0], _logs(logs)
    chief_log = sorted(logs.glob("worker-0-*.log"))[-1].read_text()
    assert re.search(r"resuming at epoch 2 of 3, step (5|9) ", chief_log), chief_log

    assert _history_epochs(history) == [1, 2, 3]
    chief, chief_weights = _weights(output / "model.keras")
    assert int(chief.optimizer.iterations) == 3 * 12
    for epoch in (1, 2, 3):
        _weights(output / "checkpoints" / f"epoch-{epoch:03d}.keras")
    _, worker_weights = _weights(output / "workers" / "worker-1" / "model.keras")
    for x, y in zip(chief_weights, worker_weights, strict=True):
        np.testing.assert_array_equal(x, y)
    # Resumed exactly: the weights of the run that was never killed.
    _, wanted = _weights(uninterrupted / "model.keras")
    scale = max(float(np.max(np.abs(w))) for w in wanted)
    for x, y in zip(chief_weights, wanted, strict=True):
        assert np.max(np.abs(x - y)) <= 1e-6 * scale
    assert not (output / "backup").exists()
    assert not (output / "workers" / "worker-1" / "backup").exists()
    # Only the chief writes the run's history, checkpoints and logs.
    assert sorted(os.listdir(output / "workers" / "worker-1")) == [
        "FINISHED",
        "model.keras",
    ]


def _logs(folder):
    return "\n".join(f"{p.name}:\n{p.read_text()[-2000:]}" for p in folder.iterdir())


@pytest.mark.parametrize(
    "bn_batch, message", [(5, "bn_batch=5 does not divide the 32"), (0, "bn_batch")]
)
def test_bn_batch_must_divide_each_devices_batch(tmp_path, bn_batch, message):
    from keras_igc import training

    with pytest.raises(ValueError, match=message):
        training.train(
            "IGC-L24M2", "digits", str(tmp_path), depth=8, epochs=1,
            batch_size=32, steps_per_epoch=1, bn_batch=bn_batch, verbose=0,
        )  # fmt: skip
