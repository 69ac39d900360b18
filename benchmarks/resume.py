"""What exact resume costs: op determinism, a backup, and starting mid-stream.

- a training step of IGC-L24M2 (depth 20, CIFAR size, batch 64) with
  TensorFlow's op determinism on and off, alternating in one process;
- one `runs.RunBackup.save` (weights, optimizer, generator states, metrics)
  of that network and of IGC-L100M2+Ident. (ImageNet);
- the first batch of `data.load("digits", ..., start=N)` for a stream
  started at 0 and one started 44 batches in (the end of a pass).

    python -m benchmarks.resume [--repeats 7]

Writes results/resume-cpu.json and prints a Markdown table.
"""

import argparse
import contextlib
import json
import os
import statistics
import tempfile

import keras
import numpy as np
import tensorflow as tf

from benchmarks.run import environment  # noqa: E402
from benchmarks.timing import median_seconds  # noqa: E402
from keras_igc import applications, data, keras_internals, runs  # noqa: E402

HERE = os.path.dirname(__file__)


def _seconds(fn):
    return median_seconds(fn, warmup=0, repeats=1)


def step_times(repeats, steps=10):
    """Median seconds per training step with op determinism off and on."""
    model = applications.get_model(
        "IGC-L24M2", input_shape=(32, 32, 3), classes=10, depth=20
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((64, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    stream = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(stream, steps_per_epoch=3, verbose=0)  # trace
    times = {"off": [], "on": []}
    for _ in range(repeats):
        for mode in ("off", "on"):
            context = (
                keras_internals.op_determinism()
                if mode == "on"
                else contextlib.nullcontext()
            )
            with context:
                run = lambda: model.fit(stream, steps_per_epoch=steps, verbose=0)  # noqa: E731
                times[mode].append(_seconds(run) / steps)
    return {mode: statistics.median(t) for mode, t in times.items()}


def backup_seconds(name, input_shape, classes, repeats, **options):
    model = applications.get_model(
        name, input_shape=input_shape, classes=classes, **options
    )
    model.compile(keras.optimizers.SGD(momentum=0.9), "mse")
    model.optimizer.build(model.trainable_variables)
    with tempfile.TemporaryDirectory() as root:
        folder = runs.RunFolder(root, announce=lambda _: None)
        backup = runs.RunBackup(folder, steps_per_epoch=100, every=1)
        backup.set_model(model)
        times = [_seconds(lambda: backup.save(0, 1)) for _ in range(repeats)]
        size = sum(
            os.path.getsize(os.path.join(path, f))
            for path, _, files in os.walk(folder.backup)
            for f in files
        )
    return statistics.median(times), size


def first_batch_seconds(start, repeats):
    def first():
        stream = data.load(
            "digits", "train", batch_size=32, seed=0, repeat=True, start=start
        )
        next(iter(stream))

    return statistics.median(_seconds(first) for _ in range(repeats))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    steps = step_times(args.repeats)
    cifar = backup_seconds("IGC-L24M2", (32, 32, 3), 10, args.repeats, depth=20)
    imagenet = backup_seconds("IGC-L100M2+Ident.", (224, 224, 3), 1000, 3)
    result = {
        "environment": environment(),
        "train_step_ms": {mode: 1e3 * t for mode, t in steps.items()},
        "determinism_ratio": steps["on"] / steps["off"],
        "backup": {
            "IGC-L24M2 depth 20": {"ms": 1e3 * cifar[0], "bytes": cifar[1]},
            "IGC-L100M2+Ident.": {"ms": 1e3 * imagenet[0], "bytes": imagenet[1]},
        },
        "first_batch_ms": {
            "start 0": 1e3 * first_batch_seconds(0, args.repeats),
            "start 44 (end of a pass)": 1e3 * first_batch_seconds(44, args.repeats),
        },
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "resume-cpu.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print("| measure | value |\n|---|---:|")
    for mode, ms in result["train_step_ms"].items():
        print(f"| IGC-L24M2 d20 train step, op determinism {mode} | {ms:.1f} ms |")
    print(f"| determinism on / off | {result['determinism_ratio']:.2f} |")
    for name, entry in result["backup"].items():
        print(
            f"| one backup, {name} | {entry['ms']:.0f} ms, "
            f"{entry['bytes'] / 2**20:.1f} MiB |"
        )
    for name, ms in result["first_batch_ms"].items():
        print(f"| first digits batch, {name} | {ms:.0f} ms |")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
