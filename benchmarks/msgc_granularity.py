"""What gates on blocks of channels cost in accuracy: MSGC on digits.

    python -m benchmarks.msgc_granularity                  # granularity 1, 4, 8
    python -m benchmarks.msgc_granularity --seeds 0 1 2 --epochs 12

The recipe of tutorials/msgc_digits.py, per seed: a dense CNN (3x3
convolutions of 32, 64, 64, 128 channels) trained on scikit-learn's digits,
converted with `msgc.convert` (every convolution but the stem a 4-head
`MSGCConv2D`), and fine-tuned to half the dense MACs once per granularity,
each from the same dense weights with the same data order. Free masks
(granularity 1, the paper's) against gates on blocks of 4 and 8 channels
(the 32-channel layer then has 8 and 4 gates per head). Reports the test
accuracy and the MAC ratio the test images take. Writes
benchmarks/results/msgc-granularity-digits.json.
"""

import argparse
import json
import os
import platform
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.output import results_path, write_json  # noqa: E402
from keras_igc import msgc, training  # noqa: E402


def dense_cnn():
    inputs = keras.Input((32, 32, 1))
    x = inputs
    for i, (filters, strides) in enumerate([(32, 1), (64, 2), (64, 1), (128, 2)]):
        x = keras.layers.Conv2D(
            filters, 3, strides=strides, padding="same", use_bias=False,
            name=f"conv{i}",
        )(x)  # fmt: skip
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="dense_cnn")


def train_dense(seed, epochs):
    keras.utils.set_random_seed(seed)
    train_data, eval_data, steps = training.fit_data("digits", 64, seed=seed)
    model = dense_cnn()
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        train_data, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0
    )
    accuracy = model.evaluate(eval_data, verbose=0, return_dict=True)["accuracy"]
    return model, accuracy


def fine_tune(dense, granularity, seed, epochs, target):
    keras.utils.set_random_seed(seed)
    train_data, eval_data, steps = training.fit_data("digits", 64, seed=seed)

    def rules(layer):
        if isinstance(layer, keras.layers.Conv2D) and layer.name != "conv0":
            return {"heads": 4, "granularity": granularity}
        return None

    model = msgc.convert(dense, rules)
    msgc.compile_for_msgc(
        model, steps, epochs, mask_learning_rate=0.05, backbone_learning_rate=0.01
    )
    model.fit(
        train_data, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0,
        callbacks=[msgc.MACTargetScheduler(target=target)],
    )  # fmt: skip
    return model.evaluate(eval_data, verbose=0, return_dict=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--granularities", nargs="*", type=int, default=[1, 4, 8])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument(
        "--output", default=results_path("msgc-granularity-digits.json")
    )
    args = parser.parse_args(argv)
    rows = []
    print("| seed | model | accuracy | MAC ratio |\n|---:|---|---:|---:|")
    for seed in args.seeds:
        dense, accuracy = train_dense(seed, args.epochs)
        rows.append({"seed": seed, "granularity": None, "accuracy": accuracy})
        print(f"| {seed} | dense | {accuracy:.4f} | 1 |", flush=True)
        for granularity in args.granularities:
            result = fine_tune(dense, granularity, seed, args.epochs, args.target)
            rows.append(
                {
                    "seed": seed, "granularity": granularity,
                    "accuracy": result["accuracy"], "mac_ratio": result["mac_ratio"],
                }
            )  # fmt: skip
            print(
                f"| {seed} | MSGC, granularity {granularity} | "
                f"{result['accuracy']:.4f} | {result['mac_ratio']:.3f} |",
                flush=True,
            )
    summary = {}
    for granularity in [None, *args.granularities]:
        picked = [r for r in rows if r["granularity"] == granularity]
        summary[str(granularity or "dense")] = {
            "accuracy_mean": float(np.mean([r["accuracy"] for r in picked])),
            "mac_ratio_mean": float(np.mean([r.get("mac_ratio", 1.0) for r in picked])),
        }
    print(json.dumps(summary, indent=1))
    results = {
        "machine": platform.processor() or platform.machine(),
        "epochs": args.epochs, "target": args.target, "rows": rows,
        "summary": summary,
    }  # fmt: skip
    write_json(args.output, results)


if __name__ == "__main__":
    sys.exit(main())
