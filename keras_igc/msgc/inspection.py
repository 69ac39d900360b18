"""What a trained MSGC network does at inference: its MACs, its gates'
decisions, each head's input channels."""

import keras
import numpy as np

from keras_igc import keras_internals
from keras_igc.layers import MACRegularizer, MaskGenerator, MSGCConv2D
from keras_igc.plotting import plot_topology  # noqa: F401 (msgc.plot_topology)


def inference_macs(model, x):
    """Per-sample MACs of an MSGC model at inference, counted as the release
    counts (the deterministic gates of each sample).

    Args:
        model: an `MSGCModel` (`msgc.convert`, the MSGC hosts), or a model
            that holds one (a `keras_igc.hub` MSGC task or detector).
        x: a batch of inputs.

    Returns:
        A NumPy array of one MAC count per sample.
    """
    regularizer = mac_regularizer(model)
    owner = keras_internals.graph_owner(model, regularizer)
    probe = keras.Model(owner.input, list(keras_internals.call_inputs(regularizer)[1:]))
    gates = probe(x, training=False)
    gates = gates if isinstance(gates, list | tuple) else [gates]
    return keras.ops.convert_to_numpy(regularizer.count_macs(gates, per_sample=True))


def inference_gates(model, x, batch_size=32):
    """`{layer name: gates (examples, heads, C_in)}`: the deterministic 0/1
    gates of every MSGC layer on the images `x` (each layer's second
    output), `batch_size` images at a time."""
    layers = _msgc_layers(model)
    owner = keras_internals.graph_owner(model, layers[0])
    probe = keras.Model(owner.input, [layer.output[1] for layer in layers])
    parts = []
    for start in range(0, len(x), batch_size):
        gates = probe(x[start : start + batch_size], training=False)
        parts.append(gates if isinstance(gates, list | tuple) else [gates])
    return {
        layer.name: np.concatenate([keras.ops.convert_to_numpy(p[i]) for p in parts])
        for i, layer in enumerate(layers)
    }


def open_gates(model, logit=100.0):
    """Open every gate of an MSGC model: the mask generators' last bias set to
    `logit`, so the network computes the dense network it started from (e.g.
    to check that dense weights loaded). Attention generators are left as
    they are."""
    for layer in keras_internals.all_layers(model):
        if isinstance(layer, MaskGenerator) and not layer.attention:
            layer.expand.bias.assign(
                np.full(layer.expand.units, logit, layer.expand.bias.dtype)
            )


def mac_regularizer(model):
    """The one `MACRegularizer` of an MSGC network (its MAC ledger)."""
    found = [
        l for l in keras_internals.all_layers(model) if isinstance(l, MACRegularizer)
    ]
    if len(found) != 1:
        raise ValueError(
            f"{model.name!r} has {len(found)} MACRegularizer layers; MAC counts "
            f"need exactly one (build the model with msgc.convert or an MSGC "
            f"application)."
        )
    return found[0]


def head_masks(model, x):
    """`{layer name: masks (batch, heads, C_in)}` of every MSGC layer on `x`."""
    layers = _msgc_layers(model)
    # One pass computes every MSGC layer's inputs.
    owner = keras_internals.graph_owner(model, layers[0])
    probe = keras.Model(
        owner.input, [keras_internals.call_inputs(layer) for layer in layers]
    )
    inputs = probe(x, training=False)
    return {
        layer.name: keras.ops.convert_to_numpy(
            layer.masks(tensors if len(tensors) > 1 else tensors[0])
        )
        for layer, tensors in zip(layers, inputs, strict=True)
    }


def msgc_layers(model):
    """The `MSGCConv2D` layers of `model`, nested ones included (may be none)."""
    return [l for l in keras_internals.all_layers(model) if isinstance(l, MSGCConv2D)]


def _msgc_layers(model):
    layers = msgc_layers(model)
    if not layers:
        raise ValueError(f"{model.name!r} has no MSGCConv2D layer.")
    return layers
