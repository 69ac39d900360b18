"""Keras' own `model.quantize("int8")` on keras_igc's convolutions, on every
backend: `GroupConv2D`, `IGCConv2D`'s primary and secondary, an IGCV2
block's depthwise and pointwise steps and an MSGC layer's convolution (its
generators' Dense layers Keras quantizes itself) store int8 kernels with a
scale per output channel, compute with them, save and load."""

import warnings

import keras
import numpy as np
import pytest

import keras_igc
from keras_igc import quantization


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def network():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 8))
    x = keras_igc.IGCConv2D(4, 2, padding="same", name="block")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras_igc.GroupConv2D(16, 1, groups=4, name="projection")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def per_channel(kernel):
    kernel = np.asarray(numpy(kernel), "float64")
    scale = np.abs(kernel).max(axis=(0, 1, 2)) / 127
    return np.round(kernel / scale) * scale


def test_model_quantize_stores_the_grouped_kernels_as_int8(tmp_path):
    model = network()
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 8)).astype("float32")
    before = numpy(model(x))
    block, projection = model.get_layer("block"), model.get_layer("projection")
    convolutions = {
        "primary": block.primary, "secondary": block.secondary, "projection": projection
    }  # fmt: skip
    wanted = {name: per_channel(conv.kernel) for name, conv in convolutions.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.quantize("int8")
    skipped = " ".join(str(w.message) for w in caught)
    assert "IGCConv2D" not in skipped and "GroupConv2D" not in skipped
    for name, conv in convolutions.items():
        assert keras.backend.standardize_dtype(conv._kernel.dtype) == "int8", name
        assert conv.dtype_policy.name == "int8_from_float32"
        got = numpy(conv.kernel)
        np.testing.assert_allclose(got, wanted[name], rtol=1e-5, atol=1e-7)
    after = numpy(model(x))
    assert np.abs(after - before).max() < 0.05 * np.abs(before).max()
    assert block.get_config()["quantized"] == {"primary": "int8", "secondary": "int8"}
    path = tmp_path / "int8.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(numpy(loaded(x)), after)
    assert loaded.get_layer("block").primary.quantization_mode == "int8"
    with pytest.raises(ValueError, match="already quantized"):
        projection.quantize("int8")


def test_other_modes_are_named_and_leave_the_kernel_float():
    model = network()
    with pytest.warns(UserWarning, match="int8 only.*mode='float8'"):
        model.quantize("float8")
    projection = model.get_layer("projection")
    assert projection.quantization_mode is None
    assert keras.backend.standardize_dtype(projection.kernel.dtype) == "float32"
    with pytest.raises(ValueError, match="`quantized` names the sublayers"):
        keras_igc.IGCConv2D(4, 2, quantized={"primary": "int4"})
    with pytest.raises(ValueError, match=r"among \['depthwise', 'pointwise1'"):
        keras_igc.IGCV2Conv2D((2, 4), quantized={"pointwise3": "int8"})
    with pytest.raises(ValueError, match=r"mask_generator `quantized`.*'reduce'"):
        keras_igc.MSGCConv2D(8, 3, quantized={"mask_generator": {"squeeze": "int8"}})


def test_qat_and_export_take_the_float_model():
    model = network()
    model.quantize("int8")
    with pytest.raises(ValueError, match=r"takes a float model.*'primary'"):
        quantization.quantize_aware(model)


def test_model_quantize_reaches_igcv2_and_msgc_layers(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 8))
    x = keras_igc.IGCV2Conv2D((2, 4), 3, padding="same", name="chain")(inputs)
    x, _ = keras_igc.MSGCConv2D(8, 3, heads=2, attention=True, name="gated")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 8)).astype("float32")
    before = numpy(model(x))
    chain, gated = model.get_layer("chain"), model.get_layer("gated")
    depthwise = np.asarray(numpy(chain.depthwise.kernel), "float64")
    scale = np.abs(depthwise).max(axis=(0, 1)) / 127  # per channel and multiplier
    model.quantize("int8")
    int8 = [chain.depthwise, *chain.pointwise, gated.conv]
    int8 += [
        getattr(gated, g).reduce for g in ("mask_generator", "attention_generator")
    ]
    for layer in int8:
        assert layer.quantization_mode == "int8", layer.name
    assert tuple(chain.depthwise.kernel_scale.shape) == (8, 1)
    np.testing.assert_allclose(
        numpy(chain.depthwise.kernel), np.round(depthwise / scale) * scale,
        rtol=1e-5, atol=1e-7,
    )  # fmt: skip
    after = numpy(model(x))
    assert np.abs(after - before).max() < 0.05 * np.abs(before).max()
    assert chain.get_config()["quantized"] == {
        "depthwise": "int8", "pointwise1": "int8", "pointwise2": "int8"
    }  # fmt: skip
    generators = {"reduce": "int8", "expand": "int8"}
    assert gated.get_config()["quantized"] == {
        "conv": "int8", "mask_generator": generators,
        "attention_generator": generators,
    }  # fmt: skip
    path = tmp_path / "int8.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(numpy(loaded(x)), after)
