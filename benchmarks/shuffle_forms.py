"""The two forms of a channel shuffle in Keras, on each backend: one gather
on the channel axis, or reshape-transpose-reshape; forward and forward plus
gradient, at IGCV3-1's shuffles and an IGC-L24M2 permutation.

    python -m benchmarks.shuffle_forms [--out benchmarks/results/shuffle-forms-cpu.json]

Each backend runs in its own process (`--backend`); `keras_igc.forms`' rule
for `ChannelShuffle` in Keras reads this file.
"""

import argparse
import functools
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks.output import write_json
from benchmarks.timing import median_seconds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("tensorflow", "jax", "torch")
# (input shape, groups): IGCV3-1 at 224, batch 16 (its widest and a late
# shuffle), and IGC-L24M2's permutation at 32x32, batch 64.
CASES = (((16, 112, 112, 96), 2), ((16, 56, 56, 144), 2), ((16, 14, 14, 384), 2),
         ((64, 32, 32, 48), 24))  # fmt: skip


def _compiled(fn):
    """`fn` as the backend runs it inside a model: traced or jitted."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if backend == "jax":
        import jax

        jitted = jax.jit(fn)
        return lambda *a: jax.block_until_ready(jitted(*a))
    return fn


def _with_gradient(form):
    """d sum(form(x) * w) / dx: the shuffle's backward pass and forward."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def run(x, w):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.reduce_sum(form(x) * w)
            return tape.gradient(y, x)

        return run
    if backend == "jax":
        import jax

        return jax.grad(lambda x, w: (form(x) * w).sum())

    def run(x, w):
        x = x.detach().requires_grad_()
        (form(x) * w).sum().backward()
        return x.grad

    return run


def measure_backend(repeats):
    import keras

    from keras_igc import ops as igc_ops

    rows = []
    for shape, groups in CASES:
        perm = igc_ops.shuffle_permutation(shape[-1], groups)
        rng = np.random.default_rng(0)
        x = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
        w = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
        forms = {
            "gather": lambda x, perm=perm: keras.ops.take(x, perm, axis=-1),
            "transpose": lambda x, g=groups: igc_ops.shuffle_channels(x, g),
        }
        row = {"shape": list(shape), "groups": groups}
        for name, form in forms.items():
            calls = {
                "forward": functools.partial(_compiled(form), x),
                "gradient": functools.partial(_compiled(_with_gradient(form)), x, w),
            }
            for part, call in calls.items():
                row[f"{name}_{part}_ms"] = 1e3 * median_seconds(
                    call, warmup=2, repeats=repeats
                )
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out")
    parser.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend:
        print(json.dumps(measure_backend(args.repeats)))
        return 0
    results = {}
    for backend in BACKENDS:
        found = subprocess.run(
            [sys.executable, "-m", "benchmarks.shuffle_forms", "--backend", backend,
             "--repeats", str(args.repeats)],
            cwd=ROOT, env=dict(os.environ, KERAS_BACKEND=backend), check=True,
            capture_output=True, text=True,
        )  # fmt: skip
        results[backend] = json.loads(found.stdout.strip().splitlines()[-1])
    print("| backend | shape | groups | gather fwd / fwd+grad ms | transpose ms |")
    print("|---|---|---:|---:|---:|")
    for backend, rows in results.items():
        for r in rows:
            print(
                f"| {backend} | {r['shape']} | {r['groups']} | "
                f"{r['gather_forward_ms']:.2f} / {r['gather_gradient_ms']:.2f} | "
                f"{r['transpose_forward_ms']:.2f} / {r['transpose_gradient_ms']:.2f} |"
            )
    if args.out:
        write_json(args.out, results)


if __name__ == "__main__":
    sys.exit(main())
