"""Checks that many test files share: the `.keras` round trip, MXNet
checkpoints written without MXNet, and MSGC gates that vary.

(Keras' own `run_layer_test` covers each layer alone, in
test_layer_harness.py; this is the model-level check.)
"""

import contextlib
import json
import struct

import keras
import numpy as np


def _as_json(config):
    return json.loads(json.dumps(config, default=repr))


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def assert_close(got, expected, rel, err_msg=""):
    """`got` equals `expected` within `rel` of the largest magnitude in
    `expected`. Tolerances on unbounded values (logits, features, boxes) are
    relative to their size throughout the suite: an absolute one is too tight
    for values near 100 under another thread count and too loose for values
    near 1e-6. Bounded values (probabilities, pixels) keep absolute ones."""
    got = np.asarray(numpy(got), "float64")
    expected = np.asarray(numpy(expected), "float64")
    assert got.shape == np.broadcast_shapes(got.shape, expected.shape), err_msg
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(
        got, expected, rtol=0, atol=rel * max(scale, 1e-30), err_msg=err_msg
    )


def assert_round_trip(model, x, directory, *, rel=0.0, predict=False):
    """`model` saved as `.keras` and loaded back in safe mode is the same
    model: same classes, layer by layer the same config, and the same outputs
    on `x` (exactly, or within `rel` of their largest magnitude). Returns the
    loaded model.

    `predict=True` compares `model.predict` (models whose call returns more
    than the prediction, or that need the compiled predict step)."""
    path = directory / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    assert [type(layer) for layer in loaded.layers] == [
        type(layer) for layer in model.layers
    ]
    for original, restored in zip(model.layers, loaded.layers, strict=True):
        # As JSON: a restored nested model may give lists where tuples were.
        assert _as_json(restored.get_config()) == _as_json(original.get_config()), (
            original.name
        )
    if predict:
        got, expected = loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    else:
        # Both on the same path: a TracedModel's first call in a state runs
        # eagerly and later ones as a traced graph, which rounds differently
        # (MSGCResNet50 loaded and called once against the traced original:
        # up to 6e-6 of the largest output, depending on the random weights).
        loaded(x), model(x)
        got, expected = loaded(x), model(x)
    if rel:
        assert_close(got, expected, rel)
    else:
        np.testing.assert_array_equal(numpy(got), numpy(expected))
    return loaded


def require_keras_hub():
    """keras-hub, the `hub` extra: .ci/run installs it, so in CI (CI=true) a
    missing keras-hub fails the keras-hub tests; a local run without it skips
    them, saying why."""
    import os

    import pytest

    if os.environ.get("CI"):
        import keras_hub  # noqa: F401
    else:
        pytest.importorskip("keras_hub", reason='pip install "keras-igc[hub]"')


def write_mxnet_params(path, arrays, version=2):
    """An MXNet NDArray-list file: legacy (0), V1 or V2 array records."""
    with open(path, "wb") as f:
        f.write(struct.pack("<QQQ", 0x112, 0, len(arrays)))
        for array in arrays.values():
            array = np.ascontiguousarray(array, "float32")
            if version == 0:
                f.write(struct.pack("<I", array.ndim))
                f.write(struct.pack(f"<{array.ndim}I", *array.shape))
            else:
                f.write(struct.pack("<I", 0xF993FAC8 + version - 1))
                if version == 2:
                    f.write(struct.pack("<i", 0))  # dense
                f.write(struct.pack("<i", array.ndim))
                f.write(struct.pack(f"<{array.ndim}q", *array.shape))
            f.write(struct.pack("<iii", 1, 0, 0))  # cpu(0), float32
            f.write(array.tobytes())
        f.write(struct.pack("<Q", len(arrays)))
        for name in arrays:
            f.write(struct.pack("<Q", len(name)) + name.encode())


def scramble_generators(model_or_layer, seed=0, per_sample=True):
    """Random gates, about a third open, and attention scales, so that every
    head keeps a different subset.

    `per_sample`: the gates vary between samples. Without it they are the
    biases alone, at least 0.5 from the threshold: in a whole network a
    float rounding upstream (any reordering of a sum) can flip a gate whose
    logit lies within it of 0, and a flipped gate changes the logits by far
    more than rounding. Attention scales never vary per sample: activations
    grow with depth in an untrained network, and so would they.
    """
    from keras_igc import keras_internals
    from keras_igc.layers import MaskGenerator

    rng = np.random.default_rng(seed)
    for layer in keras_internals.all_layers(model_or_layer):
        if isinstance(layer, MaskGenerator):
            kernel, bias = layer.expand.kernel, layer.expand.bias
            varies = per_sample and not layer.attention
            kernel.assign(rng.normal(0, 2.0 * varies, kernel.shape).astype("float32"))
            if layer.attention:
                values = rng.uniform(0.5, 1.5, bias.shape)
            elif per_sample:
                values = rng.normal(-0.5, 1.0, bias.shape)
            else:
                values = np.where(rng.random(bias.shape) < 1 / 3, 1.0, -1.0)
                values = values * (0.5 + rng.random(bias.shape))
            bias.assign(values.astype("float32"))


@contextlib.contextmanager
def serve_folder(folder):
    """Serve `folder` over HTTP on the loopback address while the block runs;
    yields the base URL (`http://127.0.0.1:PORT`)."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
