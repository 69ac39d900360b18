"""Every layer refuses an input it was not built for, with Keras' own error,
on every backend and every execution path."""

import keras
import numpy as np
import pytest

import keras_igc
from keras_igc import IGCConv2D, forms


def _igc(path):
    return lambda: IGCConv2D(4, 2, implementation=path)


def _group_conv(kernel, groups, channels):
    return lambda: keras_igc.GroupConv2D(channels, kernel, groups=groups)


# (layer, the input it is built on, another input, the path it must take)
BUILT_FOR = {
    **{f"IGCConv2D {p}": (_igc(p), (1, 6, 6, 8), (1, 6, 6, 16), p)
       for p in ("grouped", "dense", "depthwise", "split")},
    # GroupConv2D's path is chosen by backend and shape (select_path): its
    # grouped kernel where the backend has a fast one, else by shape, as under
    # a converter's form (forms.choose(layer, "converter")), which the other
    # three cases take.
    "GroupConv2D grouped": (_group_conv(3, 4, 16), (1, 4, 4, 16), (1, 4, 4, 8),
                            "grouped"),
    "GroupConv2D dense": (_group_conv(1, 4, 16), (1, 4, 4, 16), (1, 4, 4, 8), "dense"),
    "GroupConv2D depthwise": (
        _group_conv(3, 32, 64), (1, 4, 4, 64), (1, 4, 4, 32), "depthwise"),
    "GroupConv2D split": (_group_conv(3, 2, 64), (1, 4, 4, 64), (1, 4, 4, 32), "split"),
    "IGCV2Conv2D": (lambda: keras_igc.IGCV2Conv2D((2, 4)), (1, 5, 5, 8),
                    (1, 5, 5, 16), None),
    "ChannelShuffle": (lambda: keras_igc.ChannelShuffle(2), (1, 3, 3, 6),
                       (1, 3, 3, 8), None),
    "MaskGenerator": (lambda: keras_igc.MaskGenerator(2, 4), (1, 5, 5, 8),
                      (1, 5, 5, 6), None),
    "MSGCConv2D": (lambda: keras_igc.MSGCConv2D(4, 3, heads=2), (1, 5, 5, 8),
                   (1, 5, 5, 6), None),
    "GhostBatchNormalization": (
        lambda: keras_igc.GhostBatchNormalization(virtual_batch_size=1),
        (2, 3, 3, 5), (2, 3, 3, 4), None),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BUILT_FOR))
def test_a_built_layer_refuses_an_input_it_was_not_built_for(name):
    """Keras' own InputSpec error, on every layer and every path (a wider
    input once gave a result on the dense and split paths)."""
    make, built, other, path = BUILT_FOR[name]
    layer = make()
    if name.startswith("GroupConv2D") and path != "grouped":
        layer.build(built)
        layer.set_execution_form(forms.choose(layer, "converter"))
    layer(np.zeros(built, "float32"))
    fast_grouped_kernel = keras.backend.backend() == "torch" or (
        forms.tensorflow_grouped_kernel("float32")
        and keras.backend.backend() == "tensorflow"
    )
    if path is not None and (path != "grouped" or fast_grouped_kernel):
        assert layer.active_implementation == path
    with pytest.raises(ValueError, match="expected axis -1 of input shape"):
        layer(np.zeros(other, "float32"))
    # Another rank: ChannelShuffle works on any rank from 2 (it permutes the
    # last axis), the others on images only.
    rank = built[-1:] if name == "ChannelShuffle" else built[1:]
    with pytest.raises(ValueError, match="expected (min_)?ndim"):
        layer(np.zeros(rank, "float32"))


def test_the_mac_regularizer_refuses_gates_it_does_not_count():
    layer = keras_igc.MACRegularizer(1000, convolutions=[{"macs": 900, "heads": 2}])
    logits = np.zeros((2, 3), "float32")
    layer([logits, np.ones((2, 2, 4), "float32")])
    with pytest.raises(ValueError, match="heads=2"):
        layer([logits, np.ones((2, 3, 4), "float32")])
    with pytest.raises(ValueError, match="counts 1 masked convolutions.*2 gate"):
        layer([logits, np.ones((2, 2, 4), "float32"), np.ones((2, 2, 4), "float32")])
