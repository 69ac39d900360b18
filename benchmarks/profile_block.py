"""Where an IGC block's time goes: keras_igc on TensorFlow against PyTorch.

    python -m benchmarks.profile_block            # every paper stage
    python -m benchmarks.profile_block --cases "L24M2 stage3"

For each stage of benchmarks/run.py, times in one process (medians, batch as
there) the parts of the forward pass and of one training step:

- the primary 3x3 grouped convolution alone: `tf.nn.conv2d` (oneDNN, the
  "grouped" path) and PyTorch's `Conv2d(groups=L)` in its faster layout;
- the secondary with both permutations: keras_igc's one matrix product, and
  PyTorch's shuffle + grouped 1x1 + shuffle;
- Keras' per-call cost: `predict_on_batch` / `train_on_batch` of a model
  whose only layer is an `Identity` / one trainable scale;
- the whole block: keras_igc "auto" through `predict_on_batch` and
  `train_on_batch`, PyTorch's twin in its faster layout.

A part's step is its forward pass and the gradients of its input and kernel.
The parts show which one keeps a block above PyTorch's time (results in
benchmarks/NOTES.md).
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

import keras_igc  # noqa: E402
from benchmarks import torch_twin  # noqa: E402
from benchmarks.run import BLOCKS  # noqa: E402
from benchmarks.timing import median_seconds  # noqa: E402
from keras_igc import ops as igc_ops  # noqa: E402


def median_ms(function, runs=20):
    return 1e3 * median_seconds(function, warmup=3, repeats=runs)


class _Scale(keras.layers.Layer):
    """One trainable scalar: a training step with (almost) nothing to compute."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones")

    def call(self, x):
        return x * self.scale


def tensorflow_parts(batch, size, channels, L, M):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, size, size, channels)), tf.float32)
    y = tf.constant(rng.normal(size=(batch, size, size, L * M)), tf.float32)
    primary = tf.Variable(
        rng.normal(size=(3, 3, channels // L, L * M)), dtype=tf.float32
    )
    secondary = tf.Variable(rng.normal(size=(1, 1, L, L * M)), dtype=tf.float32)

    @tf.function
    def primary_forward(a):
        return tf.nn.conv2d(a, primary, 1, "SAME")

    @tf.function
    def secondary_forward(a):
        return igc_ops.secondary_dense(a, secondary, L, M)

    def with_gradient(function, kernel):
        # Forward, then the gradients of the input and the kernel, as a
        # training step computes them.
        @tf.function
        def step(a):
            with tf.GradientTape() as tape:
                tape.watch(a)
                loss = tf.reduce_sum(tf.square(function(a)))
            return tape.gradient(loss, [a, kernel])

        return step

    primary_step = with_gradient(primary_forward, primary)
    secondary_step = with_gradient(secondary_forward, secondary)
    identity = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Identity()])
    scale = keras.Sequential([keras.Input(y.shape[1:]), _Scale()])
    scale.compile(keras.optimizers.SGD(1e-3), "mse")
    block = keras.Sequential(
        [keras.Input(x.shape[1:]),
         keras_igc.IGCConv2D(L, M, 3, padding="same", use_bias=False)]
    )  # fmt: skip
    block.compile(keras.optimizers.SGD(1e-3), "mse")
    return {
        "primary": (
            median_ms(lambda: primary_forward(x).numpy()),
            median_ms(lambda: [g.numpy() for g in primary_step(x)]),
        ),
        "secondary": (
            median_ms(lambda: secondary_forward(y).numpy()),
            median_ms(lambda: [g.numpy() for g in secondary_step(y)]),
        ),
        "per-call cost": (
            median_ms(lambda: identity.predict_on_batch(x)),
            median_ms(lambda: scale.train_on_batch(y, y)),
        ),
        "block": (
            median_ms(lambda: block.predict_on_batch(x)),
            median_ms(lambda: block.train_on_batch(x, y)),
        ),
    }


class _Secondary(torch.nn.Module):
    """The twin's permutation, grouped 1x1 and inverse permutation."""

    def __init__(self, twin):
        super().__init__()
        self.twin = twin

    def forward(self, x):
        x = torch_twin.shuffle(x, self.twin.L)
        return torch_twin.shuffle(self.twin.secondary(x), self.twin.M)


def torch_parts(batch, size, channels, L, M):
    rng = np.random.default_rng(0)
    results = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.from_numpy(
            rng.normal(size=(batch, channels, size, size)).astype("float32")
        ).contiguous(memory_format=layout)
        y = torch.from_numpy(
            rng.normal(size=(batch, L * M, size, size)).astype("float32")
        ).contiguous(memory_format=layout)
        twin = torch_twin.TorchIGC(channels, L, M).to(memory_format=layout)
        parts = {
            "primary": (twin.primary, x),
            "secondary": (_Secondary(twin), y),
            "block": (twin, x),
        }
        for name, (module, data) in parts.items():

            def forward(module=module, data=data):
                with torch.no_grad():
                    module(data)

            def step(module=module, data=data):
                data.requires_grad_(True)
                module(data).square().sum().backward()
                data.grad = None
                module.zero_grad()

            timing = (median_ms(forward), median_ms(step))
            best = results.get(name)
            results[name] = timing if best is None else tuple(map(min, best, timing))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(BLOCKS))
    args = parser.parse_args()
    print("| case | part | keras_igc fwd / step ms | PyTorch best fwd / step ms |")
    print("|---|---|---:|---:|")
    for case in args.cases:
        shape = BLOCKS[case]
        ours, theirs = tensorflow_parts(*shape), torch_parts(*shape)
        for part, (forward, step) in ours.items():
            other = theirs.get(part)
            other = f"{other[0]:.2f} / {other[1]:.2f}" if other else "-"
            print(f"| {case} | {part} | {forward:.2f} / {step:.2f} | {other} |")


if __name__ == "__main__":
    main()
