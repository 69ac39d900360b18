"""How fast a ResNet-18 with half its channels pruned *statically* runs.

    python -m benchmarks.msgc_static_bound --runs 20

The bound for MSGC-ResNet18's speed: ResNet-18 in Keras (torchvision's
layout) whose two 3x3 convolutions of every basic block read only a fixed
`fraction` of their input channels (a slice, no gather, no mask generator),
against the full network, batch 1 and 8, 224x224, `tf.function`, taking
turns in one process, with each network's MACs over the full one's
(`model_complexity`). MSGC-ResNet18 at the paper's 0.49 decides per image which
channels to read, which costs more than a slice. Writes
benchmarks/results/msgc-static-bound-cpu.json.
"""

import argparse
import os
import platform
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.output import results_path, write_json  # noqa: E402
from benchmarks.timing import taking_turns  # noqa: E402
from keras_igc.complexity import model_complexity  # noqa: E402

STAGES = [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]


def _conv(x, filters, kernel, stride, fraction=1.0):
    read = max(1, int(x.shape[-1] * fraction))
    if read < x.shape[-1]:
        x = x[..., :read]
    if kernel > 1:  # symmetric padding, as torchvision pads
        x = keras.layers.ZeroPadding2D(kernel // 2)(x)
    return keras.layers.Conv2D(filters, kernel, stride, use_bias=False)(x)


def _bn(x, relu=True):
    x = keras.layers.BatchNormalization()(x)
    return keras.layers.ReLU()(x) if relu else x


def resnet18(fraction):
    """ResNet-18 whose blocks' 3x3 convolutions read `fraction` of their inputs."""
    inputs = keras.Input((224, 224, 3))
    x = _bn(_conv(inputs, 64, 7, 2))
    x = keras.layers.MaxPooling2D(3, 2, padding="same")(x)
    for filters, stride in STAGES:
        y = _bn(_conv(x, filters, 3, stride, fraction))
        y = _bn(_conv(y, filters, 3, 1, fraction), relu=False)
        if stride > 1:
            x = _bn(_conv(x, filters, 1, stride), relu=False)
        x = keras.layers.ReLU()(x + y)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1000)(x))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", nargs="*", type=float, default=[0.5, 0.4])
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 8])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--output", default=results_path("msgc-static-bound-cpu.json"))
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    found, macs = {}, {}
    for fraction in [1.0, *args.fractions]:
        model = resnet18(fraction)
        macs[fraction] = model_complexity(model)["macs"]
        function = tf.function(lambda a, m=model: m(a, training=False), autograph=False)
        found[f"fraction {fraction}"] = (lambda a, f=function: f(a).numpy(), "nhwc")
    rows = []
    print(
        "| batch | channels read | MACs / dense | ms | / dense |\n"
        "|---:|---:|---:|---:|---:|"
    )
    for batch in args.batches:
        x = np.random.default_rng(0).normal(size=(batch, 224, 224, 3))
        measured = taking_turns(found, x.astype("float32"), args.runs)
        base = measured["fraction 1.0"][0]
        for name, (ms, _) in measured.items():
            fraction = float(name.split()[-1])
            ratio = macs[fraction] / macs[1.0]
            rows.append(
                {"batch": batch, "fraction": fraction, "mac_ratio": ratio, "ms": ms,
                 "vs_dense": ms / base}
            )  # fmt: skip
            print(
                f"| {batch} | {fraction} | {ratio:.3f} | {ms:.2f} | {ms / base:.2f} |",
                flush=True,
            )
    results = {"machine": platform.processor() or platform.machine(), "rows": rows}
    write_json(args.output, results)


if __name__ == "__main__":
    sys.exit(main())
