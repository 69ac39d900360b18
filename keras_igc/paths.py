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
# MSGCConv2D's inference forms: convolve masked copies, or gather what is kept.
MSGC_IMPLEMENTATIONS = ("auto", "masked", "gather")

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


def select_msgc_form(implementation, heads, channels, kernel_size):
    """How an `MSGCConv2D` built now computes inference: `(form, limit)`.

    Forms: `"masked"` (masked copies, the training form), `"gather"` (the
    kept channels only), `"scaled_kernel"` (each sample's masks folded into
    its own copy of the kernel: for a 1x1 kernel one batched matrix product,
    for a spatial one a single convolution when the batch is one sample,
    else masked; the dense convolution's MACs without the copies), and
    `"auto"`: per call, `"gather"` when the widest head keeps at most
    `limit` channels over the batch, else `"masked"`.

    The rule for `implementation="auto"` comes from swapping the forms of
    whole classes of layers in the three hosts and timing the networks
    (TensorFlow on CPU, batch 1; benchmarks/README.md has the table):

    - several heads: `"scaled_kernel"`. A head's masks differ from the
      others', so gathering copies the input once per head and gained
      nothing; the per-sample kernel skips the copies (`--forms`:
      MSGC-MobileNetV2 1.46x -> 1.09x the dense network's time,
      MSGC-ResNet-50 1.35x -> 1.28x). Static shapes, so JAX takes it too.
    - one head, spatial kernel (ResNet-18's first convolutions): `"auto"`,
      gathering where the batch keeps at most 60% of the channels.
    - one head, 1x1 (ResNet-50's): `"masked"`; every form cost the same.

    `"masked"` on accelerators and in exports for converters (not measured
    there), and instead of gathering on JAX (static shapes).
    """
    if implementation == "masked":
        return "masked", 0
    if implementation == "gather":
        return "gather", channels
    if has_accelerator() or _PORTABLE.get():
        return "masked", 0
    if heads > 1:
        return "scaled_kernel", 0
    if tuple(kernel_size) != (1, 1) and keras.backend.backend() != "jax":
        return "auto", int(0.6 * channels)
    return "masked", 0


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
