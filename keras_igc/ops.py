"""The linear algebra of an interleaved group convolution, in `keras.ops`.

Everything here works on the weights exactly as `IGCConv2D` stores them, in
the layout of its two `keras.layers.Conv2D` sublayers:

- primary kernel, shape `(kh, kw, K, G)`: `Conv2D(groups=L)`; primary
  partition `l` reads input channels `l*K .. l*K+K-1` and writes output
  channels `l*M .. l*M+M-1` (`K = input_channels / L`, `G = L*M`).
- secondary kernel, shape `(1, 1, L, G)`: `Conv2D(groups=M)` applied after the
  permutation, so secondary partition `m` reads channel `m` of every primary
  partition.

The execution paths below (named in `keras_igc.forms`) are exact rewrites of
that composition that avoid Keras' grouped convolution, which the TensorFlow
backend runs through XLA (slow on CPU, and opaque to converters). They are
differentiable, so the same weights train through any of them.
"""

import keras
import numpy as np
from keras import ops

from keras_igc import forms


def shuffle_permutation(channels, groups):
    """Index array of the channel shuffle that regroups `channels` by `groups`.

    Viewing the channels as a `(groups, channels // groups)` matrix, the
    shuffle transposes it: output channel `j * groups + g` is input channel
    `g * (channels // groups) + j`. With `groups = L` this is the IGC
    permutation P; with `groups = M` it is its inverse.

    Args:
        channels: number of channels; must be divisible by `groups`.
        groups: number of groups.

    Returns:
        A NumPy int array `perm` such that `shuffled = x[..., perm]`.
    """
    if channels % groups:
        raise ValueError(
            f"Cannot shuffle {channels} channels into groups={groups}: the "
            f"channel count must be a multiple of the number of groups."
        )
    return np.arange(channels).reshape(groups, channels // groups).T.reshape(-1)


def _primary_blocks(primary_kernel, primary_partitions, secondary_partitions):
    """Primary kernel viewed as `(kh, kw, K, L, M)`."""
    kh, kw, k, _ = primary_kernel.shape
    return ops.reshape(
        primary_kernel, (kh, kw, k, primary_partitions, secondary_partitions)
    )


def secondary_matrices(secondary_kernel, primary_partitions, secondary_partitions):
    """Secondary kernel as `M` matrices, shape `(M, L_in, L_out)`.

    `W[m, l, j]` weighs channel `m` of primary partition `l` in output channel
    `m` of partition `j` (output channel `j*M + m` after the inverse
    permutation).
    """
    L, M = primary_partitions, secondary_partitions
    w = ops.reshape(secondary_kernel, (L, M, L))  # (l, m, j)
    return ops.transpose(w, (1, 0, 2))


def secondary_block_diagonal(
    secondary_kernel, primary_partitions, secondary_partitions
):
    """The secondary convolution and both permutations as one `(G, G)` matrix.

    Rows are indexed in primary output order `(l, m)` and columns in the
    block's output order `(j, m)`, so `primary_output @ matrix` is the whole
    second half of the block: permute, secondary 1x1, permute back. It holds
    `M` times more entries than the secondary kernel (zeros where `m != m'`),
    which costs less than the transposes a batched product needs when `M`
    is small.
    """
    L, M = primary_partitions, secondary_partitions
    w = ops.transpose(secondary_matrices(secondary_kernel, L, M), (1, 0, 2))
    eye = ops.reshape(ops.eye(M, dtype=w.dtype), (1, M, 1, M))
    # Broadcast products rather than einsum: the LiteRT converter mis-lowers
    # these einsums to batched matmuls.
    return ops.reshape(ops.expand_dims(w, -1) * eye, (L * M, L * M))


def output_bias(secondary_bias, primary_partitions, secondary_partitions):
    """Secondary bias (stored in permuted order) in the block's output order."""
    return ops.reshape(
        ops.transpose(
            ops.reshape(secondary_bias, (secondary_partitions, primary_partitions))
        ),
        (-1,),
    )


def dense_equivalent_kernel(
    primary_kernel, secondary_kernel, primary_partitions, secondary_partitions
):
    """The dense kernel W = P W^d P^T W^p of the whole block.

    A plain convolution with this kernel (same strides, padding and
    dilation) gives the block's output. Each input channel reaches each
    output channel through exactly one primary/secondary pair, so every
    entry is a single product.

    Returns:
        Tensor of shape `(kh, kw, input_channels, G)`.
    """
    L, M = primary_partitions, secondary_partitions
    kh, kw, k, _ = primary_kernel.shape
    primary = _primary_blocks(primary_kernel, L, M)  # (a, b, k, l, m)
    primary = ops.expand_dims(ops.transpose(primary, (0, 1, 3, 2, 4)), 4)
    secondary = secondary_matrices(secondary_kernel, L, M)  # (m, l, j)
    secondary = ops.reshape(ops.transpose(secondary, (1, 2, 0)), (1, 1, L, 1, L, M))
    dense = primary * secondary  # (a, b, l, k, j, m)
    return ops.reshape(dense, (kh, kw, L * k, L * M))


def depthwise_kernel(primary_kernel, primary_partitions, secondary_partitions):
    """Primary kernel as a depthwise kernel with depth multiplier `M`.

    Input channel `(l, k)` gets the `M` filters that primary partition `l`
    applies to its `k`-th input, shape `(kh, kw, input_channels, M)`.
    """
    kh, kw, k, _ = primary_kernel.shape
    blocks = _primary_blocks(primary_kernel, primary_partitions, secondary_partitions)
    return ops.reshape(
        ops.transpose(blocks, (0, 1, 3, 2, 4)),
        (kh, kw, primary_partitions * k, secondary_partitions),
    )


def grouped_conv_depthwise(
    x, kernel, groups, strides=1, padding="valid", dilation_rate=1
):
    """Grouped convolution as a depthwise convolution and a sum.

    `kernel` has the `Conv2D(groups=groups)` layout `(kh, kw, K, groups * N)`:
    group `g` reads `K` input channels and writes `N` outputs. Each input
    channel is filtered `N` times (depth multiplier), then the `K` filtered
    copies that belong to one output channel are added. Same
    multiply-accumulates as the grouped convolution; fastest on CPU when groups
    are narrow (`K * N` small). Needs equal strides along height and width.
    """
    k = kernel.shape[2]
    n = kernel.shape[3] // groups
    y = ops.depthwise_conv(
        x,
        depthwise_kernel(kernel, groups, n),
        strides=strides,
        padding=padding,
        dilation_rate=dilation_rate,
    )
    if k == 1:
        return y
    pixels = batch_free_shape(y)[:3]
    y = ops.reshape(y, (*pixels, groups, k, n))
    return ops.reshape(ops.sum(y, axis=4), (*pixels, groups * n))


def grouped_conv_split(x, kernel, groups, strides=1, padding="valid", dilation_rate=1):
    """Grouped convolution as `groups` dense convolutions on channel slices.

    Fastest on CPU when groups are wide enough for an efficient dense kernel.
    """
    k = kernel.shape[2]
    n = kernel.shape[3] // groups
    outputs = [
        ops.conv(
            x[..., g * k : (g + 1) * k],
            kernel[..., g * n : (g + 1) * n],
            strides=strides,
            padding=padding,
            dilation_rate=dilation_rate,
        )
        for g in range(groups)
    ]
    return outputs[0] if groups == 1 else ops.concatenate(outputs, axis=-1)


def grouped_conv_block_diagonal(
    x, kernel, groups, strides=1, padding="valid", dilation_rate=1
):
    """Grouped convolution as one dense convolution with a block-diagonal kernel.

    `groups` times the multiply-accumulates, in a single dense kernel: the
    cheapest form for 1x1 convolutions, where it is one matrix product.
    """
    dense = merged_groups_kernel(kernel, groups, groups)
    return ops.conv(
        x, dense, strides=strides, padding=padding, dilation_rate=dilation_rate
    )


def merged_groups_kernel(kernel, groups, factor):
    """The kernel of a `groups`-group convolution as that of an equal one with
    `groups // factor` groups.

    Each merged group holds `factor` consecutive groups on its diagonal and
    zeros elsewhere: `factor` times the multiply-accumulates, the same
    outputs. `factor = groups` is the dense kernel. Some runtimes run a few
    wide groups faster than many narrow ones (`keras_igc.export`).
    """
    if factor == 1:
        return kernel
    k, out = kernel.shape[2], kernel.shape[3]
    n = out // groups
    block = np.kron(np.eye(factor), np.ones((k, n)))
    mask = ops.convert_to_tensor(
        np.tile(block, (1, groups // factor)),
        keras.backend.standardize_dtype(kernel.dtype),
    )
    return ops.tile(kernel, (1, 1, factor, 1)) * mask


def merged_groups(kernel, groups, factor):
    """`(merged_groups_kernel(kernel, groups, factor), groups // factor)`:
    the kernel and group count a layer's grouped call runs with when its
    form merges `factor` consecutive groups (1: as they are)."""
    return merged_groups_kernel(kernel, groups, factor), groups // factor


def merged_groups_constant(kernel, groups, factor):
    """`merged_groups_kernel` as a float32 NumPy constant, snapshot of the
    kernel's values now; None for `factor` 1 (nothing merged). The form a
    layer takes for a runtime that runs narrow groups slowly."""
    if factor == 1:
        return None
    merged = merged_groups_kernel(kernel, groups, factor)
    return np.asarray(ops.convert_to_numpy(merged), "float32")


def grouped_conv_native(
    x, kernel, groups, strides=1, padding="valid", dilation_rate=1, graph_op=False
):  # fmt: skip
    """Grouped convolution by the backend's own kernel.

    On TensorFlow this calls `tf.nn.conv2d` directly where TensorFlow has a
    fast grouped kernel (`forms.tensorflow_grouped_kernel`: oneDNN on CPU,
    cuDNN on GPU), or wherever `graph_op` asks for that op (an export: the
    converters read the op, the serving runtime brings the kernel); Keras'
    `ops.conv` would wrap the same convolution in an XLA-compiled function,
    slow on CPU and opaque to converters. Everywhere else, Keras' `ops.conv`.
    """
    del groups  # the kernel's shape says it: (kh, kw, channels / groups, out)
    if keras.backend.backend() == "tensorflow" and (
        graph_op or forms.tensorflow_grouped_kernel(x.dtype)
    ):
        import tensorflow as tf

        return tf.nn.conv2d(
            x,
            kernel,
            strides=_pair(strides),
            padding=padding.upper(),
            dilations=_pair(dilation_rate),
        )
    return ops.conv(
        x, kernel, strides=strides, padding=padding, dilation_rate=dilation_rate
    )


def _pair(value):
    return [value, value] if isinstance(value, int) else list(value)


# The exact forms of a grouped convolution, by the path names of
# `keras_igc.forms`.
GROUPED_CONVOLUTIONS = {
    "grouped": grouped_conv_native,
    "dense": grouped_conv_block_diagonal,
    "depthwise": grouped_conv_depthwise,
    "split": grouped_conv_split,
}


def batch_free_shape(x):
    """`x`'s shape with the batch as -1, constant where the other dimensions
    are known when traced: converters then write static reshapes (LiteRT's
    XNNPACK delegates no reshape to a computed shape, and each one it leaves
    out splits the delegated graph); else the dynamic shape."""
    if None in x.shape[1:]:
        return ops.shape(x)
    return (-1, *x.shape[1:])


def shuffle_channels(x, groups):
    """`x[..., shuffle_permutation(channels, groups)]` as a reshape, a
    transpose and a reshape: what converters emit as their runtime's own
    channel shuffle (no gather)."""
    shape = batch_free_shape(x)
    channels = x.shape[-1]
    grouped = ops.reshape(x, (-1, groups, channels // groups))
    return ops.reshape(ops.transpose(grouped, (0, 2, 1)), shape)


def secondary_grouped(y, secondary_kernel, L, M, secondary_bias=None):
    """Permutation, the secondary as a grouped 1x1 convolution (M groups of L
    channels) and the inverse permutation: the block as the paper draws it,
    for converters (the grouped op is emitted whatever kernels this machine
    has). The secondary's bias (stored in its own, permuted order) is added
    before the inverse permutation, where converters fold it into the
    convolution."""
    y = shuffle_channels(y, L)
    y = grouped_conv_native(y, secondary_kernel, M, graph_op=True)
    if secondary_bias is not None:
        y = y + secondary_bias
    return shuffle_channels(y, M)


def secondary_conv(y, secondary_kernel, L, M):
    """Permutation, secondary 1x1 and inverse permutation as one 1x1
    convolution: what converters map onto their runtimes' 1x1 convolution
    in the layout of the convolutions around it (no transposes)."""
    kernel = secondary_block_diagonal(secondary_kernel, L, M)
    return ops.conv(y, ops.reshape(kernel, (1, 1, L * M, L * M)))


def secondary_batched(y, secondary_kernel, L, M):
    """Permutation, secondary 1x1 and inverse permutation as `M` products of
    `L x L` in one batched matmul: secondary partition `m` is every `M`-th
    channel, so two transposes gather and scatter the partitions. It does
    `1/M` of `secondary_dense`'s multiply-adds, for the two transposes."""
    shape = batch_free_shape(y)
    partitions = ops.transpose(ops.reshape(y, (-1, L, M)), (2, 0, 1))  # (m, n, l)
    out = ops.matmul(partitions, secondary_matrices(secondary_kernel, L, M))
    return ops.reshape(ops.transpose(out, (1, 2, 0)), shape)  # (n, j, m)


def secondary_dense(y, secondary_kernel, L, M):
    """Permutation, secondary 1x1 and inverse permutation as one matmul."""
    # A 2-D product maps onto one GEMM on every backend; a broadcast 4-D
    # matmul does not always.
    shape = batch_free_shape(y)
    flat = ops.reshape(y, (-1, L * M))
    out = ops.matmul(flat, secondary_block_diagonal(secondary_kernel, L, M))
    return ops.reshape(out, shape)
