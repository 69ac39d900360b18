"""The execution paths of a grouped convolution or an IGC block, and which one
runs where.

One vocabulary for both layers. Every path is exact (same outputs and
gradients from the same weights); they differ only in speed and in what
converters can read:

- `"grouped"`: Keras' own grouped convolution (`Conv2D(groups=...)`; for
  `IGCConv2D`, its sublayers in order).
- `"dense"`: one dense convolution (a block-diagonal kernel; for `IGCConv2D`,
  the block's dense-equivalent kernel, which then includes the secondary).
- `"depthwise"`: a depthwise convolution and a sum (narrow groups).
- `"split"`: one dense convolution per group, on channel slices (wide groups).

The linear algebra of each is in `keras_igc.ops`; this module holds only the
device policy that `implementation="auto"` follows.
"""

import contextlib
import contextvars

import keras

PATHS = ("grouped", "dense", "depthwise", "split")
IMPLEMENTATIONS = ("auto",) + PATHS

# A dense kernel up to this many weights (3x3, 48 -> 48 channels) runs on CPU as
# fast as any sparse form of it (benchmarks/), so its extra MACs cost nothing.
SMALL_DENSE_KERNEL = 3 * 3 * 48 * 48

_CPU_PATHS = contextvars.ContextVar("keras_igc_cpu_paths", default=False)


def select_path(groups, group_inputs, group_outputs, kernel_size, strides):
    """The fastest exact path for a grouped convolution on this backend and device.

    `"grouped"` on the PyTorch backend (oneDNN, cuDNN) and on any accelerator.
    On CPU with TensorFlow or JAX, XLA's grouped convolution is slow, so (by
    the benchmarks in benchmarks/): a 1x1 or small convolution runs as one
    dense kernel, narrow groups as a depthwise convolution, wide groups as
    dense convolutions on slices.

    For an IGC block, pass the primary convolution (`groups=L`,
    `group_outputs=M`): it does most of the work, and its dense form becomes
    the whole block's dense-equivalent kernel (same size; the secondary comes
    for free).
    """
    if keras.backend.backend() == "torch" or (
        has_accelerator() and not _CPU_PATHS.get()
    ):
        return "grouped"
    kh, kw = kernel_size
    dense_weights = kh * kw * groups * group_inputs * groups * group_outputs
    if (kh, kw) == (1, 1) or dense_weights <= SMALL_DENSE_KERNEL:
        return "dense"
    if group_inputs * group_outputs <= 16 and strides[0] == strides[1]:
        return "depthwise"
    return "split"


@contextlib.contextmanager
def cpu_paths():
    """Layers built inside this block pick their paths as on a CPU.

    Export uses it: on a GPU, "auto" picks the native grouped convolution,
    which the TensorFlow backend wraps in an XLA-compiled function that
    converters and CPU serving cannot run. The CPU paths run anywhere.
    """
    token = _CPU_PATHS.set(True)
    try:
        yield
    finally:
        _CPU_PATHS.reset(token)


def has_accelerator():
    """Whether the current Keras backend computes on a GPU or TPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    return False
