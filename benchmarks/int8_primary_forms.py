"""The primary of an IGC block in int8 in ONNX Runtime: can any form beat the
float grouped convolution that the ONNX int8 rule keeps?

    python -m benchmarks.int8_primary_forms [--batch 32] [--runs 30]
        [--out benchmarks/results/int8-primary-forms-cpu.json]

The quick-start network's primaries (IGC-L24M2: L = 24 partitions of M = 2,
4, 8 channels at 32x32, 16x16, 8x8), each as a one-node graph in four forms:

- "float grouped": `Conv(group=L)`, what the int8 file keeps now;
- "int8 grouped": `QLinearConv(group=L)` between QuantizeLinear and
  DequantizeLinear (MLAS has no fast int8 kernel for groups that are not
  depthwise);
- "float depthwise + sum" and "int8 depthwise + sum": the same convolution
  as a depthwise one over M copies of each partition's inputs (a `Gather` of
  the channels: copy `(l, o, i)` reads input `l*M + i` with weight
  `W[l*M + o, i]`), whose M products per output are then summed
  (`ReduceSum`, in float after DequantizeLinear). MLAS does have an int8
  depthwise kernel; the form does the grouped convolution's multiply-adds on
  M times the activations. It is not keras_igc's own "depthwise" form
  (`ops.grouped_conv_depthwise`: each input filtered M times, a depth
  multiplier): MLAS's int8 depthwise path takes one output per group, hence
  the copies.

Each form runs in its own session (2 threads), the four taking turns
(`timing.taking_turns`); the outputs are checked against the float grouped
form's (the int8 ones within the rounding of 8 bits).
"""

import argparse

import numpy as np

from benchmarks.output import results_path, write_json
from benchmarks.timing import taking_turns

# (L, M, size): the quick-start network's three stages.
STAGES = ((24, 2, 32), (24, 4, 16), (24, 8, 8))
PADS = [1, 1, 1, 1]  # a 3x3 kernel, "same"


def graphs(L, M, size, batch, rng):
    """`{form: onnx.ModelProto}` of one primary with random weights."""
    from onnx import TensorProto, helper, numpy_helper

    G = L * M
    kernel = (rng.normal(size=(G, M, 3, 3)) * 0.2).astype("float32")
    # Copy (l, o, i) of the depthwise form: input l*M + i, weight W[l*M + o, i].
    copies = [(l, o, i) for l in range(L) for o in range(M) for i in range(M)]
    channels = np.array([l * M + i for l, _, i in copies], "int64")
    depthwise = np.stack([kernel[l * M + o, i] for l, o, i in copies])[:, None]
    weight_scale = np.float32(np.abs(kernel).max() / 127)
    constants = {
        "W": kernel, "Wd": depthwise, "channels": channels,
        "Wq": _int8(kernel, weight_scale), "Wdq": _int8(depthwise, weight_scale),
        "sx": np.float32(6 / 255), "zx": np.uint8(0),  # ReLU'd N(0, 1) inputs
        "sw": weight_scale, "zw": np.int8(0),
        "sy": np.float32(1 / 16), "zy": np.uint8(128),
        "split": np.array([batch, G, M, size, size], "int64"),
        "axis": np.array([2], "int64"),
        "joined": np.array([batch, G, size, size], "int64"),
    }  # fmt: skip
    quantize = helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"])

    def qlinear(x, w, groups, y):
        return helper.make_node(
            "QLinearConv", [x, "sx", "zx", w, "sw", "zw", "sy", "zy"], [y],
            group=groups, pads=PADS,
        )  # fmt: skip

    def summed(z):  # (batch, G*M, h, w) -> the sum over each output's M copies
        return [
            helper.make_node("Reshape", [z, "split"], ["z5"]),
            helper.make_node("ReduceSum", ["z5", "axis"], ["y5"], keepdims=0),
            helper.make_node("Reshape", ["y5", "joined"], ["y"]),
        ]

    forms = {
        "float grouped": [
            helper.make_node("Conv", ["x", "W"], ["y"], group=L, pads=PADS)
        ],
        "int8 grouped": [
            quantize,
            qlinear("xq", "Wq", L, "yq"),
            helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"]),
        ],
        "float depthwise + sum": [
            helper.make_node("Gather", ["x", "channels"], ["xt"], axis=1),
            helper.make_node("Conv", ["xt", "Wd"], ["z"], group=G * M, pads=PADS),
            *summed("z"),
        ],
        "int8 depthwise + sum": [
            quantize,
            helper.make_node("Gather", ["xq", "channels"], ["xt"], axis=1),
            qlinear("xt", "Wdq", G * M, "zq"),
            helper.make_node("DequantizeLinear", ["zq", "sy", "zy"], ["z"]),
            *summed("z"),
        ],
    }
    models = {}
    for form, nodes in forms.items():
        used = {name for node in nodes for name in node.input}
        graph = helper.make_graph(
            nodes, form.replace(" ", "_"),
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(np.asarray(v), k)
             for k, v in constants.items() if k in used],
        )  # fmt: skip
        models[form] = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 17)]
        )
    return models


def _int8(w, scale):
    return np.clip(np.round(w / scale), -127, 127).astype("int8")


def stage_rows(L, M, size, batch, runs, rng):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    # Four sessions take turns: one's threads spinning after its call would
    # take the cores from the next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    runners = {}
    for form, model in graphs(L, M, size, batch, rng).items():
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        # ONNX graphs are NCHW: taking_turns transposes the NHWC batch.
        runners[form] = (lambda x, s=session: s.run(None, {"x": x})[0], "nchw")
    # ReLU'd activations, as a primary reads them (after BatchNorm and ReLU).
    x = np.maximum(rng.normal(size=(batch, size, size, L * M)), 0).astype("float32")
    found = taking_turns(runners, x, runs)
    base_ms, expected = found["float grouped"]
    scale = float(np.abs(expected).max())
    return [
        {
            "case": f"L{L}M{M} {size}x{size}", "batch": batch, "form": form,
            "ms": round(ms, 3), "vs_float_grouped": round(ms / base_ms, 2),
            "max_error": round(float(np.abs(y - expected).max()) / scale, 4),
        }
        for form, (ms, y) in found.items()
    ]  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=30, help="timed calls per form")
    parser.add_argument("--out", default=results_path("int8-primary-forms-cpu.json"))
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = [
        row
        for L, M, size in STAGES
        for row in stage_rows(L, M, size, args.batch, args.runs, rng)
    ]
    print("| case | form | ms | / float grouped | max error / max output |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['form']} | {r['ms']:.2f} | "
            f"{r['vs_float_grouped']:.2f} | {r['max_error']:.4f} |"
        )
    write_json(args.out, {"batch": args.batch, "runs": args.runs, "rows": rows})


if __name__ == "__main__":
    main()
