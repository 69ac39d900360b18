"""keras-igc's benchmarks: speed, memory and accuracy against the strongest
baseline a user could pick, measured in the same run.

`python -m benchmarks --list` prints `BENCHMARKS`: each benchmark, what it
measures, the command that runs it and the results files it writes
(benchmarks/results/). Each benchmark is a module run with
`python -m benchmarks.NAME` from the repository root; the timing helper they
share is `benchmarks.timing`, the results writer `benchmarks.output`.
benchmarks/README.md holds the tables (tests/test_docs.py keeps its index
equal to this one); benchmarks/NOTES.md what was tried.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str  # the module: python -m benchmarks.NAME
    measures: str
    command: str
    results: tuple  # files under benchmarks/results/


BENCHMARKS = (
    Benchmark(
        "run",
        "IGC blocks and a depth-20 IGC network, forward and training step, "
        "every path against PyTorch (NCHW and channels_last) and dense",
        "python -m benchmarks.run [--quick] --out benchmarks/results/bench-cpu.json",
        (
            "bench-cpu.json",
            "bench-cpu-quick-onednn.json",
            "bench-cpu-quick-channels-last.json",
            "bench-gpu-jax.json",
        ),
    ),  # fmt: skip
    Benchmark(
        "profile_block",
        "where an IGC block's time goes (primary, secondary, per-call cost) "
        "against PyTorch's",
        "python -m benchmarks.profile_block",
        ("profile-cpu.md",),
    ),
    Benchmark(
        "secondary_forms",
        "the two forms of an IGC block's permutations and secondary in Keras "
        "(one block-diagonal matmul, or M batched L x L products): the Keras "
        "rule's GROUPED_SECONDARY_FROM",
        "python -m benchmarks.secondary_forms --out "
        "benchmarks/results/secondary-forms-cpu.json",
        ("secondary-forms-cpu.json",),
    ),
    Benchmark(
        "primary_forms",
        "the forms of the primary 3x3 grouped convolution in TensorFlow on CPU; "
        "--merged: oneDNN's grouped kernel with narrow groups merged (Keras' "
        "MERGED_GROUP_OUTPUTS)",
        "python -m benchmarks.primary_forms [--merged [--gradients]]",
        (),
    ),
    Benchmark(
        "int8_primary_forms",
        "an IGC block's primary in int8 in ONNX Runtime (grouped, or depthwise "
        "over M copies and a sum) against the float grouped convolution the "
        "int8 rule keeps",
        "python -m benchmarks.int8_primary_forms --out "
        "benchmarks/results/int8-primary-forms-cpu.json",
        ("int8-primary-forms-cpu.json",),
    ),
    Benchmark(
        "export",
        "size, latency and exactness of the exported networks (SavedModel, "
        "LiteRT, ONNX) against PyTorch eager (NCHW, channels_last), its own ONNX "
        "in ONNX Runtime and, with --torch-compile, torch.compile",
        "python -m benchmarks.export [--networks IGCV3-1] [--batches 2 4 8 32] "
        "[--torch-compile]",
        (
            "export-cpu.json",
            "export-batches-cpu.json",
            "export-igcv3-cpu.json",
            "export-compile-cpu.json",
        ),
    ),
    Benchmark(
        "export_forms",
        "every form of an IGC block and of a grouped convolution in each export "
        "runtime: the rules of keras_igc.forms",
        "python -m benchmarks.export_forms [--cases ...] [--update]",
        ("export-forms-cpu.json", "export-grouped-cpu.json"),
    ),
    Benchmark(
        "msgc_latency",
        "the MSGC hosts' inference forms against their dense hosts, in Keras "
        "and in the exports; which form for which layer",
        "python -m benchmarks.msgc_latency [--forms] [--exports] [--granularity 8]",
        (
            "msgc-latency-cpu.json",
            "msgc-forms-cpu.json",
            "msgc-exports-cpu.json",
            "msgc-latency-cpu-vs-g8.json",
        ),
    ),  # fmt: skip
    Benchmark(
        "msgc_static_bound",
        "how fast a ResNet-18 with half its channels pruned statically runs: "
        "MSGC-ResNet18's bound",
        "python -m benchmarks.msgc_static_bound --runs 20",
        ("msgc-static-bound-cpu.json",),
    ),
    Benchmark(
        "msgc_granularity",
        "what gates on blocks of channels cost in accuracy: MSGC on digits",
        "python -m benchmarks.msgc_granularity --seeds 0 1 2",
        ("msgc-granularity-digits.json",),
    ),
    Benchmark(
        "quantize",
        "8-bit LiteRT and ONNX exports: digits accuracy (MSGC gate flips) "
        "against float, speed and size against the float files and PyTorch's "
        "int8 (ONNX, torch.ao); --classes: which convolutions ONNX Runtime "
        "runs slower in int8",
        "python -m benchmarks.quantize [--skip-accuracy] [--classes]",
        ("quantize-cpu.json", "quantize-classes-cpu.json"),
    ),
    Benchmark(
        "qat",
        "quantization-aware training against post-training int8 on digits: "
        "accuracy and agreement of each int8 file (LiteRT, ONNX) with the float "
        "and the fine-tuned model, MSGC gate flips",
        "python -m benchmarks.qat [--epochs 15] [--qat-epochs 3]",
        ("qat-digits.json",),
    ),
    Benchmark(
        "networks",
        "whole networks of every family, a training step (model.fit's own) and "
        "inference, against PyTorch's best for the same network and weights, "
        "each side in its own process",
        "python -m benchmarks.networks [--cases ...] [--msgc-release CHECKOUT]",
        (
            "networks-cpu.json",
            "networks-igcv3-folded-cpu.json",
            "networks-compile-cpu.json",
            "networks-compile-merged-cpu.json",
        ),
    ),
    Benchmark(
        "shuffle_forms",
        "the two forms of a channel shuffle in Keras (gather, transpose) on each "
        "backend, forward and gradient: keras_igc.forms' shuffle rule",
        "python -m benchmarks.shuffle_forms",
        ("shuffle-forms-cpu.json",),
    ),
    Benchmark(
        "resume",
        "what exact resume costs: op determinism, a backup, a mid-stream start",
        "python -m benchmarks.resume",
        ("resume-cpu.json",),
    ),
)
# Results written by the command line rather than a module here.
RUNS = {
    "msgc-digits": "python tutorials/msgc_digits.py (its log and topology)",
    "sweep-digits": "keras-igc tune --dataset digits --directory "
    "benchmarks/results/sweep-digits",
}


def index_table():
    """`BENCHMARKS` as the Markdown table of benchmarks/README.md."""
    lines = ["| benchmark | measures | command | results |", "|---|---|---|---|"]
    for b in BENCHMARKS:
        results = ", ".join(f"`{r}`" for r in b.results) or "printed"
        lines.append(f"| {b.name} | {b.measures} | `{b.command}` | {results} |")
    return "\n".join(lines)
