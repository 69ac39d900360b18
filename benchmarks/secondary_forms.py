"""The two forms of an IGC block's second half in Keras on TensorFlow (the
permutation, the secondary 1x1 and the inverse permutation): one
block-diagonal matmul (`ops.secondary_dense`, M times the multiply-adds) or M
products of L x L in one batched matmul between two transposes
(`ops.secondary_batched`); forward, and forward plus the gradients of the input
and the kernel, at every stage of IGC-L100M2+Ident. (224x224, batch 16),
IGC-L24M2 and IGC-L4M8 (32x32, batch 64).

    python -m benchmarks.secondary_forms \
        [--out benchmarks/results/secondary-forms-cpu.json]

`keras_igc.forms.GROUPED_SECONDARY_FROM["keras"]`, the L*(M-1) from which the
Keras rule takes the batched form, reads this file.
"""

import argparse
import functools
import sys

import numpy as np

from benchmarks.output import write_json
from benchmarks.timing import median_seconds

# (batch, height and width, L, M) of each network's stages.
CASES = (
    (16, 56, 100, 2), (16, 28, 200, 2), (16, 14, 400, 2), (16, 7, 800, 2),
    (64, 32, 24, 2), (64, 16, 24, 4), (64, 8, 24, 8),
    (64, 32, 4, 8), (64, 16, 4, 16), (64, 8, 4, 32),
)  # fmt: skip


def _calls(form, y, kernel, L, M):
    import tensorflow as tf

    @tf.function
    def forward(y):
        return form(y, kernel, L, M)

    @tf.function
    def gradient(y):
        with tf.GradientTape() as tape:
            tape.watch(y)
            out = form(y, kernel, L, M)
            loss = tf.reduce_sum(out * out)
        return tape.gradient(loss, [y, kernel])

    return {
        "forward": functools.partial(forward, y),
        "gradient": functools.partial(gradient, y),
    }


def measure(repeats):
    import tensorflow as tf

    from keras_igc import ops as igc_ops

    forms = {"dense": igc_ops.secondary_dense, "batched": igc_ops.secondary_batched}
    rows = []
    for batch, size, L, M in CASES:
        rng = np.random.default_rng(0)
        y = tf.constant(rng.normal(size=(batch, size, size, L * M)).astype("float32"))
        kernel = tf.Variable(rng.normal(size=(1, 1, L, L * M)).astype("float32"))
        row = {"batch": batch, "size": size, "L": L, "M": M, "L*(M-1)": L * (M - 1)}
        calls = {name: _calls(form, y, kernel, L, M) for name, form in forms.items()}
        np.testing.assert_allclose(
            calls["batched"]["forward"](), calls["dense"]["forward"](), rtol=1e-4,
            atol=1e-4 * float(tf.reduce_max(tf.abs(calls["dense"]["forward"]()))),
        )  # fmt: skip
        for part in ("forward", "gradient"):
            times = {name: [] for name in forms}
            for turn in range(repeats + 2):  # the forms take turns, call by call
                for name in forms:
                    seconds = median_seconds(calls[name][part], warmup=0, repeats=1)
                    times[name] += [seconds] if turn >= 2 else []
            for name in forms:
                row[f"{name}_{part}_ms"] = 1e3 * float(np.median(times[name]))
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    rows = measure(args.repeats)
    print(
        "| batch | size | L | M | L*(M-1) | dense fwd / fwd+grad ms | batched ms "
        "| batched / dense, fwd+grad |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['size']} | {r['L']} | {r['M']} | {r['L*(M-1)']} | "
            f"{r['dense_forward_ms']:.2f} / {r['dense_gradient_ms']:.2f} | "
            f"{r['batched_forward_ms']:.2f} / {r['batched_gradient_ms']:.2f} | "
            f"{r['batched_gradient_ms'] / r['dense_gradient_ms']:.2f} |"
        )
    if args.out:
        write_json(args.out, {"tensorflow": rows})


if __name__ == "__main__":
    sys.exit(main())
