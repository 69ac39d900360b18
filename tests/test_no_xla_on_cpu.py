"""On a CPU-only TensorFlow run, "auto" never reaches Keras' XLA grouped convolution.

Keras' TensorFlow backend compiles a convolution with XLA exactly when the
input has more channels than the kernel expects (a grouped convolution). The
tests below record every backend convolution that `fit`, `predict` and
`evaluate` make, and check that none is grouped.
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.tensorflow import nn as tf_backend_nn

import keras_igc
from keras_igc import applications, forms

pytestmark = [
    pytest.mark.tensorflow_only,
    pytest.mark.skipif(
        bool(tf.config.list_physical_devices("GPU")),
        reason="checks the CPU-only selection; on a GPU the grouped path is intended",
    ),
]


@pytest.fixture
def grouped_conv_calls(monkeypatch):
    calls = []
    original = tf_backend_nn.conv

    def recording_conv(inputs, kernel, *args, **kwargs):
        calls.append(inputs.shape[-1] != kernel.shape[-2])
        return original(inputs, kernel, *args, **kwargs)

    monkeypatch.setattr(tf_backend_nn, "conv", recording_conv)
    return calls


def igc_network(implementation="auto"):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(48, 3, padding="same")(inputs)
    for L, M, stride in [(24, 2, 1), (24, 4, 2), (4, 8, 1), (4, 16, 2), (2, 16, 1)]:
        x = keras_igc.IGCConv2D(
            L, M, strides=stride, padding="same", implementation=implementation
        )(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x))


def test_fit_predict_evaluate_make_no_grouped_convolution(grouped_conv_calls):
    model = igc_network()
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype("float32")
    y = np.arange(8) % 4
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert grouped_conv_calls, "the recorder saw no convolution at all"
    assert not any(grouped_conv_calls)


def test_residual_application_with_grouped_projections(grouped_conv_calls):
    model = applications.IGCResNet20(classes=3, classifier_activation=None)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype("float32")
    model.fit(x, np.arange(4) % 3, epochs=1, batch_size=4, verbose=0)
    model.predict(x, verbose=0)
    assert any(isinstance(layer, keras_igc.GroupConv2D) for layer in model.layers)
    assert grouped_conv_calls and not any(grouped_conv_calls)


def test_the_recorder_sees_keras_grouped_convolution(grouped_conv_calls):
    """Guards the tests above: what a user would write in plain Keras is seen."""
    model = keras.Sequential(
        [
            keras.Input((16, 16, 8)),
            keras.layers.Conv2D(8, 3, groups=4),
            keras_igc.ChannelShuffle(4),
            keras.layers.Conv2D(8, 1, groups=2),
        ]
    )
    model.predict(np.zeros((1, 16, 16, 8), "float32"), verbose=0)
    assert any(grouped_conv_calls)


def test_auto_takes_a_grouped_kernel_only_where_it_is_fast_and_not_xla():
    """On TensorFlow's CPU "grouped" is oneDNN's kernel called directly
    (float32 and bfloat16); in float16, without oneDNN and under
    for a converter (export) the CPU rewrites are taken instead. One test:
    the rule is a pure function of its arguments."""
    onednn = forms.tensorflow_grouped_kernel("float32")
    for L, M, strides in itertools.product(
        [1, 2, 3, 4, 8, 16, 24, 100], [1, 2, 4, 8, 16, 32], [(1, 1), (2, 2), (1, 2)]
    ):
        for channels in {L, L * M, L * M // 2 if M % 2 == 0 else L}:
            for kernel_size in [(3, 3), (1, 1), (5, 1)]:
                args = (L, channels // L, M, kernel_size, strides)
                for dtype in ("float32", "bfloat16"):
                    path = forms.select_path(forms.Geometry(*args, dtype=dtype))
                    assert path == "grouped" if onednn else path != "grouped"
                float16 = forms.Geometry(*args, dtype="float16")
                assert forms.select_path(float16) != "grouped"
                converted = forms.select_path(forms.Geometry(*args), for_converter=True)
                assert converted in ("dense", "depthwise", "split")
