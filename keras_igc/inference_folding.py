"""BatchNorm folded into the convolution before it, in Keras' own inference
call (`TracedModel.call` on TensorFlow).

At inference a BatchNormalization that follows a convolution is a scale of
the convolution's output channels and a bias. Computing the convolution with
the scaled kernel and adding the bias, from the live variables in the traced
graph, leaves TensorFlow's graph optimizer a convolution and a `BiasAdd`,
which it fuses with the activation after them into one oneDNN call. A
BatchNorm after a grouped or depthwise convolution is otherwise never fused:
IGCV3-1's inference at batch 16 took 0.71-0.74x the time, at batch 1
0.78-0.84x (benchmarks/NOTES.md, "BatchNorm folded in Keras' inference call").

`export.prepare` folds the same pairs into a clone's weights for the runtimes;
this folds them at each call, so the model's weights stay as trained.
"""

import collections

import keras
from keras import ops

from keras_igc.layers import GroupConv2D, IGCConv2D

# The convolutions folded at inference: exactly these types (a subclass, such
# as a quantization-aware layer, computes its kernel otherwise).
FOLDED_AT_INFERENCE = (keras.layers.Conv2D, GroupConv2D, keras.layers.DepthwiseConv2D)


def batch_norm_pairs(graph_nodes, outputs):
    """`{producer: BatchNormalization}` for every foldable pair among the
    Functional graph's `graph_nodes` (`keras_internals.graph_nodes`): a
    BatchNorm over the last axis called once, whose one input is the output of
    a convolution (`Conv2D`, `DepthwiseConv2D` without activation, or an
    `IGCConv2D`) that is called once, read by that BatchNorm alone and not one
    of the model's `outputs`."""
    calls = collections.Counter(id(node.operation) for node in graph_nodes)
    consumers = collections.Counter(
        id(parent.operation) for node in graph_nodes for parent in node.parent_nodes
    )
    outputs = {id(t) for t in outputs}
    pairs = {}
    for node in graph_nodes:
        bn = node.operation
        if (
            not isinstance(bn, keras.layers.BatchNormalization)
            or bn.axis not in (-1, 3)
            or calls[id(bn)] != 1
            or len(node.parent_nodes) != 1
        ):
            continue
        (parent,) = node.parent_nodes
        producer = parent.operation
        foldable = isinstance(producer, IGCConv2D) or (
            isinstance(producer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
            and producer.activation is keras.activations.linear
        )
        if (
            foldable
            and calls[id(producer)] == 1
            and consumers[id(producer)] == 1
            and not any(id(t) in outputs for t in parent.output_tensors)
        ):
            pairs[producer] = bn
    return pairs


def folded_operations(graph_nodes, outputs):
    """`{id(operation): replacement call}` for Keras' inference call: each
    foldable convolution computed with its BatchNorm folded in, and that
    BatchNorm passing its input through. Only float32 layers in Keras' own
    form fold (not mixed precision, not `model.quantize`'d, not an export
    clone's converter forms)."""
    replaced = {}
    for conv, bn in batch_norm_pairs(graph_nodes, outputs).items():
        if _folds(conv) and _folds(bn):
            replaced[id(conv)] = _folded_convolution(conv, bn)
            replaced[id(bn)] = _pass_through
    return replaced


def _folds(layer):
    if layer.compute_dtype != "float32" or layer.variable_dtype != "float32":
        return False
    if layer.dtype_policy.quantization_mode is not None:
        return False
    if isinstance(layer, keras.layers.BatchNormalization):
        return True
    form = getattr(layer, "execution_form", None)
    return (
        type(layer) in FOLDED_AT_INFERENCE
        and layer.data_format == "channels_last"
        and not (form is not None and form.for_converter)
    )


def _pass_through(inputs, **kwargs):
    return inputs


def _folded_convolution(conv, bn):
    """`conv` followed by `bn` in inference mode, as one convolution with a
    bias: `kernel * scale` and `(bias - mean) * scale + beta`, per output
    channel, where `scale = gamma / sqrt(variance + epsilon)`."""

    def call(inputs, **kwargs):
        import tensorflow as tf

        scale = ops.rsqrt(bn.moving_variance + bn.epsilon)
        if bn.gamma is not None:
            scale = scale * bn.gamma
        shift = -bn.moving_mean * scale
        if bn.beta is not None:
            shift = shift + bn.beta
        if conv.use_bias:
            shift = shift + conv.bias * scale
        if isinstance(conv, keras.layers.DepthwiseConv2D):
            # Output channel c * multiplier + j is kernel[..., c, j].
            kernel = conv.kernel * ops.reshape(scale, conv.kernel.shape[2:])
            outputs = ops.depthwise_conv(
                inputs, kernel, strides=conv.strides, padding=conv.padding,
                dilation_rate=conv.dilation_rate,
            )  # fmt: skip
        else:
            outputs = conv.convolution_op(inputs, conv.kernel * scale)
        # `BiasAdd`, the op TensorFlow's remapper fuses into the convolution.
        return tf.nn.bias_add(outputs, shift)

    return call
