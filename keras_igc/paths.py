"""The execution paths of a grouped convolution or an IGC block, and which one
runs where.

One vocabulary for both layers. Every path is exact (same outputs and
gradients from the same weights); they differ only in speed and in what
converters can read:

- `"grouped"`: the backend's own grouped-convolution kernel (oneDNN or cuDNN;
  on TensorFlow called directly, without the XLA-compiled function Keras'
  `Conv2D(groups=...)` wraps it in), then for `IGCConv2D` the secondary and
  both permutations as one matrix product.
- `"dense"`: one dense convolution (a block-diagonal kernel; for `IGCConv2D`,
  the block's dense-equivalent kernel, which then includes the secondary).
- `"depthwise"`: a depthwise convolution and a sum (narrow groups).
- `"split"`: one dense convolution per group, on channel slices (wide groups).

The linear algebra of each is in `keras_igc.ops`; this module holds only the
device policy that `implementation="auto"` follows.
"""

import contextlib
import contextvars
import functools

import keras

from keras_igc import keras_internals

PATHS = ("grouped", "dense", "depthwise", "split")
IMPLEMENTATIONS = ("auto",) + PATHS

# A dense kernel up to this many weights (3x3, 48 -> 48 channels) runs on CPU as
# fast as any sparse form of it (benchmarks/), so its extra MACs cost nothing.
SMALL_DENSE_KERNEL = 3 * 3 * 48 * 48

_PORTABLE = contextvars.ContextVar("keras_igc_portable_paths", default=False)


def select_path(
    groups, group_inputs, group_outputs, kernel_size, strides, dtype="float32"
):
    """The fastest exact path for a grouped convolution on this backend and device.

    By the benchmarks in benchmarks/ (their NOTES.md has the figures):

    - `"grouped"` wherever the backend has a fast grouped kernel: PyTorch
      (oneDNN, cuDNN), any accelerator, and TensorFlow on CPU with oneDNN in
      float32 or bfloat16 (`tensorflow_grouped_kernel`);
    - otherwise (JAX on CPU, whose XLA grouped convolution is slow; TensorFlow
      without oneDNN, or in float16): a 1x1 or small convolution as one dense
      kernel, narrow groups as a depthwise convolution, wide groups as dense
      convolutions on slices.

    For an IGC block, pass the primary convolution (`groups=L`,
    `group_outputs=M`): it does most of the work, and its dense form becomes
    the whole block's dense-equivalent kernel (same size; the secondary comes
    for free).
    """
    backend = keras.backend.backend()
    if not _PORTABLE.get() and (
        backend == "torch"
        or has_accelerator()
        or (backend == "tensorflow" and tensorflow_grouped_kernel(dtype))
    ):
        return "grouped"
    kh, kw = kernel_size
    dense_weights = kh * kw * groups * group_inputs * groups * group_outputs
    if (kh, kw) == (1, 1) or dense_weights <= SMALL_DENSE_KERNEL:
        return "dense"
    if group_inputs * group_outputs <= 16 and strides[0] == strides[1]:
        return "depthwise"
    return "split"


def tensorflow_grouped_kernel(dtype):
    """Whether TensorFlow computes a grouped convolution in `dtype`, and its
    gradients, with a fast kernel of its own: cuDNN on a GPU, oneDNN on CPU
    for float32 and bfloat16. (Without oneDNN, or in float16, its CPU kernel
    is slow and has no gradient.)"""
    dtype = keras.backend.standardize_dtype(dtype)
    if has_accelerator():
        return True
    return keras_internals.tensorflow_onednn() and dtype in ("float32", "bfloat16")


@contextlib.contextmanager
def portable_paths():
    """Layers built inside this block are built for converters.

    Export uses it. `"auto"` then never picks `"grouped"`: the exporting
    machine's kernels say nothing about the serving runtime's, which export
    chooses for itself (`keras_igc.export.folding`). A layer given
    `"grouped"` explicitly emits TensorFlow's plain grouped `Conv2D` op
    (`tf.nn.conv2d`, whatever this machine's kernels; never Keras'
    XLA-compiled one), which tf2onnx turns into an ONNX `Conv` with `group`
    and the LiteRT converter into a grouped `CONV_2D`; an IGC block's
    secondary and permutations become one 1x1 convolution.
    """
    token = _PORTABLE.set(True)
    try:
        yield
    finally:
        _PORTABLE.reset(token)


def is_portable():
    """Whether layers built now are built for converters (`portable_paths`)."""
    return _PORTABLE.get()


def has_accelerator():
    """Whether the current Keras backend computes on a GPU or TPU."""
    return _has_accelerator(keras.backend.backend())


# Per backend, once: the devices are fixed once the runtime has started (and
# asking starts it), and the grouped path asks on every eager call.
@functools.cache
def _has_accelerator(backend):
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    return False
