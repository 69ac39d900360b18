"""Timing runners that take turns, shared by the benchmarks."""

import statistics
import time

import numpy as np


def timed(found, x, runs, block=4):
    """`{name: (median ms, output)}` of `found = {name: (run, layout)}`.

    The runners take turns: each turn one untimed call (calling another
    runtime in between evicts caches) and `block` timed ones, so drift on a
    shared machine reaches them all alike. `layout` "nchw" runners get `x`
    (NHWC) transposed.
    """
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    inputs = {
        name: x if layout == "nhwc" else nchw for name, (_, layout) in found.items()
    }
    outputs = {name: np.asarray(run(inputs[name])) for name, (run, _) in found.items()}
    times = {name: [] for name in found}
    for _ in range(-(-runs // block)):
        for name, (run, _) in found.items():
            run(inputs[name])
            for _ in range(block):
                start = time.perf_counter()
                run(inputs[name])
                times[name].append(1e3 * (time.perf_counter() - start))
    return {name: (statistics.median(t), outputs[name]) for name, t in times.items()}
