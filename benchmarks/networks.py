"""Whole networks against PyTorch: a training step and inference of each
family, with the same weights, each framework in its own process.

    python -m benchmarks.networks [--cases IGCNet38/b64 ...] [--runs 8]
        [--jax] [--torch-compile] [--msgc-release CHECKOUT]
        [--out benchmarks/results/networks-cpu.json]

The Keras side (TensorFlow backend; `--jax` adds Keras on JAX) times a
training step through `train_on_batch`, which runs `model.fit`'s own step:
once as `model.compile(loss=...)` gives it (Keras' default optimizer) and
once with the releases' optimizer (`CoupledSGD`, Nesterov momentum 0.9,
coupled L2), the like of PyTorch's step below. Inference is timed as
`predict_on_batch` and as `model(x)`. The PyTorch side runs PyTorch's best
for the same network: the IGC networks' twin (`torch_twin.KerasTwin`),
pytorchcv's IGCV3, the MSGC release's own ResNet-18 (its checkout:
`--msgc-release`, the fixture generator's), each in NCHW and channels_last
(`--torch-compile` adds `torch.compile` of the faster layout), trained with
`torch.optim.SGD` (Nesterov momentum 0.9, weight decay 1e-4) on
cross-entropy (plus the release's MAC loss for MSGC).

TensorFlow and PyTorch in one process crash in backward, so each side is a
worker process (`--worker`) that the driver asks, in turns, for a block of
timed calls of each of its runners; only one worker computes at a time. The
Keras worker writes the model (`.keras`) that the others load, and every
worker reports its inference logits on the same batch, which the driver
checks against the Keras model's before timing anything. Peak memory is the
growth of the worker's peak resident set over two calls of a runner after its
first (a process's first call also holds what later calls reuse, which would
charge it to whichever runner comes first).
"""

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.output import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 0
REPLY = "@benchmarks.networks "  # marks the workers' answers on their stdout


@dataclasses.dataclass(frozen=True)
class Case:
    network: str  # a registry name
    size: int
    batch: int
    peer: str  # "twin", "pytorchcv" or "msgc-release"
    depth: int | None = None
    classes: int = 1000


CASES = {
    "IGCNet38/b64": Case("IGC-L24M2", 32, 64, "twin", depth=38, classes=10),
    "IGCNet38/b128": Case("IGC-L24M2", 32, 128, "twin", depth=38, classes=10),
    "IGC-L100M2+Ident./b16": Case("IGC-L100M2+Ident.", 224, 16, "twin"),
    "IGCV3-1/b16": Case("IGCV3-1", 224, 16, "pytorchcv"),
    "IGCV3-1/b32": Case("IGCV3-1", 224, 32, "pytorchcv"),
    "MSGC-ResNet18/b16": Case("MSGC-ResNet18", 224, 16, "msgc-release"),
}


def batch(case):
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(case.batch, case.size, case.size, 3)).astype("float32")
    return x, rng.integers(0, case.classes, size=(case.batch,))


def _peak_kib():
    with open("/proc/self/status") as f:
        return {
            line.split(":")[0]: int(line.split()[1])
            for line in f
            if line.startswith(("VmHWM", "VmRSS"))
        }


# Workers: each builds `{runner name: call}` and `logits()`, then answers the
# driver's requests on stdin, one JSON line each.


def keras_runners(case, model_file):
    import keras

    import keras_igc
    from keras_igc.applications import registry

    if os.path.exists(model_file):
        model = keras.saving.load_model(model_file, compile=False)
    else:
        options = dict(input_shape=(case.size, case.size, 3), classes=case.classes)
        if case.depth:
            options["depth"] = case.depth
        keras.utils.set_random_seed(SEED)
        model = registry.get_model(case.network, classifier_activation=None, **options)
        model.save(model_file)
    x, y = batch(case)
    x, y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    trainers = {
        "train: compile() defaults": None,  # Keras' default optimizer
        "train: release SGD": keras_igc.optimizers.CoupledSGD(0.01, weight_decay=1e-4),
    }
    runners = {}
    for name, optimizer in trainers.items():
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        if optimizer is None:
            clone.compile(loss=loss)
        else:
            clone.compile(optimizer=optimizer, loss=loss)
        runners[name] = lambda clone=clone: clone.train_on_batch(x, y)
    runners["infer: predict_on_batch"] = lambda: model.predict_on_batch(x)
    runners["infer: model(x)"] = lambda: model(x, training=False)
    return runners, lambda: np.asarray(model.predict_on_batch(x))


def torch_runners(case, model_file, compile_best, msgc_release):
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    net, mac_loss = _torch_network(case, model_file, msgc_release)
    x, y = batch(case)
    nchw = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(y)
    layouts = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}
    runners, modules = {}, {}
    for label, layout in layouts.items():
        module = _copy(net).to(memory_format=layout)
        modules[label] = module
        runners.update(_torch_pair(module, nchw.contiguous(memory_format=layout),
                                   labels, mac_loss, f"PyTorch {label}"))  # fmt: skip
    if compile_best:
        module = _copy(net).to(memory_format=torch.channels_last)
        runners.update(_torch_pair(
            torch.compile(module), nchw.contiguous(memory_format=torch.channels_last),
            labels, mac_loss, "PyTorch channels_last compiled",
        ))  # fmt: skip

    def logits():
        module = modules["NCHW"].eval()
        with torch.no_grad():
            out = module(nchw)
        return (out[0] if isinstance(out, tuple) else out).numpy()

    return runners, logits


def _copy(net):
    import copy

    return copy.deepcopy(net)


def _torch_pair(module, x, y, mac_loss, label):
    import torch

    optimizer = torch.optim.SGD(
        module.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4
    )

    def train():
        module.train()
        optimizer.zero_grad()
        out = module(x)
        logits, extra = out if isinstance(out, tuple) else (out, None)
        loss = torch.nn.functional.cross_entropy(logits, y)
        if mac_loss is not None:
            loss = loss + mac_loss(extra)
        loss.backward()
        optimizer.step()

    def infer():
        module.eval()
        with torch.no_grad():
            module(x)

    return {f"train: {label}": train, f"infer: {label}": infer}


def _torch_network(case, model_file, msgc_release):
    """PyTorch's best for `case`, with the Keras model's weights; and the
    extra loss term of its training step (None but for MSGC)."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    import keras_igc  # noqa: F401 (registers the layers for loading)
    from benchmarks import torch_twin

    model = keras.saving.load_model(model_file, compile=False)
    if case.peer == "twin":
        return torch_twin.KerasTwin(model).eval(), None
    if case.peer == "pytorchcv":
        return torch_twin.pytorchcv_igcv3(model), None
    return _msgc_release(model, msgc_release)


def _msgc_release(model, checkout):
    """The MSGC release's ResNet-18 (no attention) with `model`'s weights,
    and the release's MAC loss (main_dist.py) at its target 0.5."""
    if not checkout:
        raise SystemExit(
            "MSGC-ResNet18's PyTorch peer is the release's own code: pass "
            "--msgc-release CHECKOUT (a checkout of hellozhuo/msgc), or leave "
            "the case out with --cases."
        )
    import torch

    from keras_igc.applications.weights import pytorch

    # The fixture generator's way of building the release's hosts.
    generator = _module_at(
        os.path.join(ROOT, "tests", "fixtures", "generate", "msgc_release_torch.py")
    )
    models, net_config = generator.release_models(checkout)
    net = generator.build(models, net_config, "msgc_resnet18", False, 224)
    shapes = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    state = {  # the release's generators are 1x1 convolutions: 4D
        key: torch.from_numpy(
            pytorch.to_torch(np.asarray(variable), kind).reshape(shapes[key]).copy()
        )
        for key, (variable, kind) in pytorch.torch_names(model).items()
    }
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any("num_batches" not in key for key in missing):
        raise SystemExit(
            f"the release's ResNet-18 and MSGC-ResNet18 differ: "
            f"missing {missing}, unexpected {unexpected}"
        )
    flops_ori, _, flops_main, _, flops_mask = net.get_flops()

    def mac_loss(extra):
        dgc, bonus = extra
        flops = flops_main + dgc + flops_mask - bonus
        return 2.0 * (flops / flops_ori - 0.5)

    return net, mac_loss


def _module_at(path):
    """The Python file at `path` as a module (it finds its own neighbours)."""
    import importlib.util

    name = os.path.basename(path).removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def worker(args):
    case = CASES[args.case]
    if args.worker == "torch":
        runners, logits = torch_runners(
            case, args.model_file, args.torch_compile, args.msgc_release
        )
    else:
        runners, logits = keras_runners(case, args.model_file)
    reply = lambda message: print(REPLY + json.dumps(message), flush=True)  # noqa: E731
    reply({"runners": list(runners), "logits": logits()[:4].tolist()})
    for line in sys.stdin:
        request = json.loads(line)
        run = runners[request["runner"]]
        if request["kind"] == "warm":  # a first call, then two: peak memory
            run()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # the peak resident set restarts from now
            before = _peak_kib()["VmRSS"]
            for _ in range(2):
                run()
            reply({"peak_mib": (_peak_kib()["VmHWM"] - before) / 1024})
        else:
            times = []
            for _ in range(request["calls"]):
                start = time.perf_counter()
                run()
                times.append(1e3 * (time.perf_counter() - start))
            reply({"ms": times})


# The driver.


class Worker:
    def __init__(self, side, case_name, model_file, args):
        backend = {"keras-tensorflow": "tensorflow", "keras-jax": "jax"}.get(
            side, "torch"
        )
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        command = [sys.executable, "-m", "benchmarks.networks", "--worker",
                   "torch" if side == "torch" else "keras", "--case", case_name,
                   "--model-file", model_file]  # fmt: skip
        if args.torch_compile:
            command.append("--torch-compile")
        if args.msgc_release:
            command += ["--msgc-release", args.msgc_release]
        self.side = side
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        hello = self._read()
        self.runners, self.logits = hello["runners"], np.array(hello["logits"])

    def _read(self):
        for line in self.process.stdout:  # what else the worker prints: passed on
            if line.startswith(REPLY):
                return json.loads(line.removeprefix(REPLY))
            print(line, end="")
        raise SystemExit(f"the {self.side} worker stopped (its stderr is above)")

    def ask(self, runner, kind, calls=0):
        self.process.stdin.write(
            json.dumps({"runner": runner, "kind": kind, "calls": calls}) + "\n"
        )
        self.process.stdin.flush()
        return self._read()

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def run_case(name, args):
    sides = ["keras-tensorflow", "torch"] + (["keras-jax"] if args.jax else [])
    with tempfile.TemporaryDirectory() as folder:
        model_file = os.path.join(folder, "model.keras")
        workers = []
        try:
            for side in sides:  # the first writes the model the others load
                workers.append(Worker(side, name, model_file, args))
            reference = workers[0].logits
            for worker in workers[1:]:
                gap = float(np.max(np.abs(worker.logits - reference)))
                scale = float(np.max(np.abs(reference)))
                if gap > 1e-3 * max(scale, 1.0):
                    raise SystemExit(
                        f"{name}: the {worker.side} network's logits differ from "
                        f"Keras' by {gap:.3g} (scale {scale:.3g}): not the same "
                        f"network."
                    )
            rows = {}
            for worker in workers:
                for runner in worker.runners:
                    peak = worker.ask(runner, "warm")["peak_mib"]
                    rows[(worker.side, runner)] = {"peak_mib": round(peak, 1), "ms": []}
            for _ in range(-(-args.runs // args.block)):
                for worker in workers:
                    for runner in worker.runners:
                        times = worker.ask(runner, "time", args.block)["ms"]
                        rows[(worker.side, runner)]["ms"] += times
        finally:
            for worker in workers:
                worker.close()
    results = []
    for (side, runner), row in rows.items():
        kind, label = runner.split(": ", 1)
        results.append({
            "case": name, "side": side, "kind": kind, "runner": label,
            "ms": round(statistics.median(row["ms"]), 1), "peak_mib": row["peak_mib"],
        })  # fmt: skip
    for kind in ("train", "infer"):
        best = min(
            r["ms"] for r in results if r["kind"] == kind and r["side"] == "torch"
        )
        for r in results:
            if r["kind"] == kind:
                r["vs_best_pytorch"] = round(r["ms"] / best, 2)
    return results


def markdown(results):
    lines = [
        "| case | measure | runner | ms | / best PyTorch | peak MiB |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in results:
        who = r["runner"] if r["side"] == "torch" else f"{r['side']}: {r['runner']}"
        lines.append(
            f"| {r['case']} | {r['kind']} | {who} | {r['ms']} | "
            f"{r['vs_best_pytorch']:.2f} | {r['peak_mib']} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases", nargs="+", choices=sorted(CASES), default=list(CASES)
    )
    parser.add_argument("--runs", type=int, default=8, help="timed calls per runner")
    parser.add_argument("--block", type=int, default=2, help="calls per turn")
    parser.add_argument("--jax", action="store_true", help="add Keras on JAX")
    parser.add_argument("--torch-compile", action="store_true")
    parser.add_argument("--msgc-release", help="a checkout of hellozhuo/msgc")
    parser.add_argument("--out")
    parser.add_argument("--worker", choices=("keras", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--model-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    results = []
    for name in args.cases:
        print(f"{name} ...", flush=True)
        results += run_case(name, args)
        print(markdown([r for r in results if r["case"] == name]), flush=True)
    if args.out:
        write_json(args.out, {"rows": results, "runs": args.runs})
    print(markdown(results))


if __name__ == "__main__":
    sys.exit(main())
