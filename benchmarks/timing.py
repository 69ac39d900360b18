"""The benchmarks' one timing helper: medians of timed calls, alone or taking
turns with the runners they are compared with."""

import statistics
import time

import numpy as np


def median_seconds(fn, warmup=1, repeats=7):
    """Median wall time of `fn()` over `repeats` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def taking_turns(found, x, runs, block=4, untimed=1):
    """`{name: (median ms, output)}` of `found = {name: (run, layout)}`.

    The runners take turns: each turn `untimed` calls (calling another
    runtime in between evicts caches) and `block` timed ones, so drift on a
    shared machine reaches them all alike. `layout` "nchw" runners get `x`
    (NHWC) transposed. The outputs are each runner's first.
    """
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    inputs = {
        name: x if layout == "nhwc" else nchw for name, (_, layout) in found.items()
    }
    outputs = {name: np.asarray(run(inputs[name])) for name, (run, _) in found.items()}
    times = {name: [] for name in found}
    for _ in range(-(-runs // block)):
        for name, (run, _) in found.items():
            call = lambda run=run, x=inputs[name]: run(x)  # noqa: E731
            times[name] += [
                1e3 * median_seconds(call, warmup=untimed if i == 0 else 0, repeats=1)
                for i in range(block)
            ]
    return {name: (statistics.median(t), outputs[name]) for name, t in times.items()}
