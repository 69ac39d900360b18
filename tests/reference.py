"""NumPy oracle for the interleaved group convolution, written from the paper.

It follows the definition step by step (primary partitions, permutation,
secondary partitions, inverse permutation) with explicit loops, in float64,
and shares no code with keras_igc.
"""

import math

import numpy as np


def conv2d(x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """Dense NHWC convolution (TensorFlow's rule for "same" padding)."""
    _, height, width, _ = x.shape
    kh, kw = kernel.shape[:2]
    (sh, sw), (dh, dw) = strides, dilation
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if padding == "same":
        out_h, out_w = math.ceil(height / sh), math.ceil(width / sw)
        pad_h = max((out_h - 1) * sh + span_h - height, 0)
        pad_w = max((out_w - 1) * sw + span_w - width, 0)
        x = np.pad(
            x,
            (
                (0, 0),
                (pad_h // 2, pad_h - pad_h // 2),
                (pad_w // 2, pad_w - pad_w // 2),
                (0, 0),
            ),
        )
    else:
        out_h = (height - span_h) // sh + 1
        out_w = (width - span_w) // sw + 1
    out = np.zeros(x.shape[:1] + (out_h, out_w, kernel.shape[-1]))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + (out_h - 1) * sh + 1, sh)
            cols = slice(j * dw, j * dw + (out_w - 1) * sw + 1, sw)
            out += x[:, rows, cols, :] @ kernel[i, j]
    return out


def igc(
    x,
    primary_kernel,
    secondary_kernel,
    bias,
    L,
    M,
    strides=(1, 1),
    padding="valid",
    dilation=(1, 1),
):
    """IGC block output; kernels in the layout of Conv2D(groups=L) / (groups=M)."""
    x = np.asarray(x, np.float64)
    primary_kernel = np.asarray(primary_kernel, np.float64)
    secondary_kernel = np.asarray(secondary_kernel, np.float64)
    K = x.shape[-1] // L
    # Primary: partition l convolves its K input channels into M channels.
    primary = np.concatenate(
        [
            conv2d(
                x[..., l * K : (l + 1) * K],
                primary_kernel[..., l * M : (l + 1) * M],
                strides,
                padding,
                dilation,
            )
            for l in range(L)
        ],
        axis=-1,
    )
    # P: secondary partition m holds channel m of every primary partition.
    permuted = np.stack(
        [primary[..., l * M + m] for m in range(M) for l in range(L)], axis=-1
    )
    # Secondary: a 1x1 convolution inside each of the M partitions of L channels.
    pointwise = secondary_kernel[0, 0]
    secondary = np.concatenate(
        [
            permuted[..., m * L : (m + 1) * L] @ pointwise[:, m * L : (m + 1) * L]
            for m in range(M)
        ],
        axis=-1,
    )
    if bias is not None:
        secondary = secondary + np.asarray(bias, np.float64)
    # P^T: back to primary order.
    return np.stack(
        [secondary[..., m * L + j] for j in range(L) for m in range(M)], axis=-1
    )


def shuffle_matrix(channels, groups):
    """The channel shuffle as a matrix: `x @ P` moves channel `r * C/g + j`
    to position `j * g + r` (`groups` rows of `C/g` transposed)."""
    per_group = channels // groups
    matrix = np.zeros((channels, channels))
    for r in range(groups):
        for j in range(per_group):
            matrix[r * per_group + j, j * groups + r] = 1.0
    return matrix


def block_diagonal(pointwise_kernel, groups):
    """A 1x1 group convolution's kernel `(1, 1, C/g, C)` as a `(C, C)` matrix
    with zeros outside its groups."""
    blocks = np.asarray(pointwise_kernel, np.float64)[0, 0]
    size, channels = blocks.shape
    outputs = channels // groups
    matrix = np.zeros((channels, channels))
    for g in range(groups):
        matrix[g * size : (g + 1) * size, g * outputs : (g + 1) * outputs] = blocks[
            :, g * outputs : (g + 1) * outputs
        ]
    return matrix


def igcv2_dense_kernel(depthwise_kernel, pointwise_kernels, partitions):
    """IGCV2's chain as one `(kh, kw, C, C)` kernel: the depthwise kernel
    times `W_2 P_2 W_3 P_3 ... W_K P_K` as explicit matrices."""
    depthwise = np.asarray(depthwise_kernel, np.float64)[:, :, :, 0]
    channels = depthwise.shape[-1]
    mixing = np.eye(channels)
    for kernel, groups in zip(pointwise_kernels, partitions, strict=True):
        mixing = (
            mixing @ block_diagonal(kernel, groups) @ shuffle_matrix(channels, groups)
        )
    return depthwise[:, :, :, None] * mixing[None, None]


def igcv2_path_counts(channels, partitions):
    """How many paths join each input channel to each output channel in the
    chain's connection pattern (every weight taken as 1)."""
    counts = np.eye(channels)
    for groups in partitions:
        size = channels // groups
        ones = np.ones((1, 1, size, channels))
        counts = (
            counts @ block_diagonal(ones, groups) @ shuffle_matrix(channels, groups)
        )
    return counts
