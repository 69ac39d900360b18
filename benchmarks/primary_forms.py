"""Forms of the IGC primary (3x3 grouped) convolution in TensorFlow on CPU.

    python -m benchmarks.primary_forms

Times, in one tf.function each and one process, the primary convolution of
IGC-L24M2's three CIFAR stages (batch 64) computed as: L separate
convolutions concatenated ("split"), one block-diagonal dense convolution
("dense"), an im2col gather with one batched matmul per partition
("im2col"), TensorFlow's grouped convolution under XLA ("xla grouped", how
Keras runs `Conv2D(groups)` on TensorFlow), and the same `tf.nn.conv2d`
without XLA ("onednn grouped": oneDNN's grouped kernel, keras_igc's
"grouped" path). Each form is checked against the dense one. Results are in
benchmarks/NOTES.md.

    python -m benchmarks.primary_forms --merged [--gradients]

times oneDNN's grouped kernel against the same convolution with 2, 4, 8
consecutive partitions merged into one group (zeros between, the kernel
merged inside the function from a variable, as Keras' "grouped" form does;
up to 16 outputs a group), for IGC-L24M2's stages and IGC-L100M2+Ident.'s
(batch 16), forward or forward and gradients; the runners take turns.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.timing import median_seconds  # noqa: E402
from keras_igc import ops as igc_ops  # noqa: E402

STAGES = [(64, 8, 192, 24), (64, 16, 96, 24), (64, 32, 48, 24)]  # N, HxW, C, L
# IGC-L100M2+Ident.'s four stages (M = 2), at batch 16.
WIDE_STAGES = [(16, 56, 200, 100), (16, 28, 400, 200), (16, 14, 800, 400),
               (16, 7, 1600, 800)]  # fmt: skip


def median_ms(function, x, runs=30):
    return 1e3 * median_seconds(lambda: function(x).numpy(), warmup=5, repeats=runs)


def forms(batch, size, channels, partitions):
    m = channels // partitions
    rng = np.random.default_rng(0)
    kernel = rng.random((3, 3, m, channels)).astype("float32")  # grouped HWIO
    dense = np.zeros((3, 3, channels, channels), "float32")
    for g in range(partitions):
        block = slice(g * m, (g + 1) * m)
        dense[:, :, block, block] = kernel[:, :, :, block]
    kernel, dense = tf.constant(kernel), tf.constant(dense)
    # (L, 9*M, M): each partition's kernel as one matrix for im2col.
    per_partition = tf.reshape(
        tf.transpose(tf.reshape(kernel, (3, 3, m, partitions, m)), (3, 0, 1, 2, 4)),
        (partitions, 9 * m, m),
    )

    @tf.function
    def split(x):
        parts = zip(
            tf.split(x, partitions, -1), tf.split(kernel, partitions, -1), strict=True
        )
        return tf.concat([tf.nn.conv2d(a, k, 1, "SAME") for a, k in parts], -1)

    @tf.function
    def dense_form(x):
        return tf.nn.conv2d(x, dense, 1, "SAME")

    @tf.function
    def im2col(x):
        padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        shifts = [
            padded[:, i : i + size, j : j + size] for i in range(3) for j in range(3)
        ]
        columns = tf.reshape(tf.stack(shifts, 3), (-1, 9, partitions, m))
        columns = tf.reshape(
            tf.transpose(columns, (2, 0, 1, 3)), (partitions, -1, 9 * m)
        )
        out = tf.matmul(columns, per_partition)
        return tf.reshape(tf.transpose(out, (1, 0, 2)), (batch, size, size, channels))

    @tf.function(jit_compile=True)
    def xla_grouped(x):
        return tf.nn.conv2d(x, kernel, 1, "SAME")

    @tf.function
    def onednn_grouped(x):
        return tf.nn.conv2d(x, kernel, 1, "SAME")

    return {"split": split, "dense": dense_form, "im2col": im2col,
            "xla grouped": xla_grouped, "onednn grouped": onednn_grouped}  # fmt: skip


def merged_forms(channels, partitions, gradients):
    """`{name: function}`: oneDNN's grouped kernel, and with each merge factor
    that divides L and keeps a group at most 16 outputs."""
    m = channels // partitions
    kernel = tf.Variable(
        np.random.default_rng(0).random((3, 3, m, channels)).astype("float32")
    )

    def form(factor):
        def convolution(x):
            merged = igc_ops.merged_groups_kernel(kernel, partitions, factor)
            return tf.nn.conv2d(x, merged, 1, "SAME")

        @tf.function
        def forward(x):
            return convolution(x)

        @tf.function
        def with_gradients(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = convolution(x)
            dx, dk = tape.gradient(y, [x, kernel], output_gradients=y)
            return y[..., :1] + tf.reduce_sum(dx) + tf.reduce_sum(dk)

        return with_gradients if gradients else forward

    factors = [f for f in (1, 2, 4, 8) if partitions % f == 0 and f * m <= 16]
    return {
        "onednn grouped" if f == 1 else f"merged x{f} ({f * m} outputs)": form(f)
        for f in factors
    }


def main_merged(gradients, rounds=3):
    for batch, size, channels, partitions in STAGES[::-1] + WIDE_STAGES:
        x = tf.constant(
            np.random.default_rng(1).random((batch, size, size, channels), "float32")
        )
        found = merged_forms(channels, partitions, gradients)
        expected = found["onednn grouped"](x).numpy()
        times = {name: [] for name in found}
        for _ in range(rounds):
            for name, function in found.items():
                times[name].append(median_ms(function, x, runs=8))
        base = np.median(times["onednn grouped"])
        for name, function in found.items():
            error = (
                np.abs(function(x).numpy() - expected).max() / np.abs(expected).max()
            )
            ms = np.median(times[name])
            print(
                f"{size:>2}x{size} C={channels:<4} L={partitions:<3} batch {batch:<2} "
                f"{name:<24} {ms:7.2f} ms  {ms / base:4.2f}x  (rel diff {error:.1e})",
                flush=True,
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merged", action="store_true")
    parser.add_argument("--gradients", action="store_true")
    args = parser.parse_args()
    if args.merged:
        return main_merged(args.gradients)
    for batch, size, channels, partitions in STAGES:
        x = tf.constant(
            np.random.default_rng(1).random((batch, size, size, channels), "float32")
        )
        found = forms(batch, size, channels, partitions)
        expected = found["dense"](x).numpy()
        for name, function in found.items():
            error = np.abs(function(x).numpy() - expected).max()
            print(
                f"{size:>2}x{size} C={channels:<3} L={partitions}  {name:<14} "
                f"{median_ms(function, x):7.2f} ms  (max diff {error:.1e})"
            )


if __name__ == "__main__":
    main()
