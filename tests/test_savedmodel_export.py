"""SavedModel export (TensorFlow backend only; see conftest.py)."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from tensorflow.core.protobuf import saved_model_pb2

import keras_igc

RELOAD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    path, inputs, outputs = sys.argv[1:4]
    loaded = tf.saved_model.load(path)
    x = np.load(inputs)
    np.save(outputs, loaded.serve(x).numpy())
    imported = any(name.startswith("keras_igc") for name in sys.modules)
    print(json.dumps({"keras_igc_imported": imported}))
    """
)


def xla_compiled_functions(export_dir):
    """Names of the functions in a SavedModel that must be compiled with XLA."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return [
        fn.signature.name
        for graph in proto.meta_graphs
        for fn in graph.graph_def.library.function
        if fn.attr["_XlaMustCompile"].b
    ]


def igc_model():
    return keras.Sequential(
        [
            keras.Input((16, 16, 8)),
            keras_igc.IGCConv2D(4, 2, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras_igc.IGCConv2D(2, 8, 3, strides=2, padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5),
        ]
    )


@pytest.mark.parametrize("batch", [1, 3])
def test_export_reloads_without_keras_igc_and_matches(tmp_path, batch):
    model = igc_model()
    export_dir = str(tmp_path / "saved")
    model.export(export_dir, verbose=False)
    x = np.random.default_rng(0).normal(size=(batch, 16, 16, 8)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            RELOAD,
            export_dir,
            tmp_path / "x.npy",
            tmp_path / "y.npy",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "keras_igc_imported": False
    }
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model(x), atol=1e-5)


def test_auto_export_has_no_xla_compiled_function(tmp_path):
    model = igc_model()
    model.export(str(tmp_path / "auto"), verbose=False)
    assert xla_compiled_functions(str(tmp_path / "auto")) == []


def test_the_xla_check_sees_the_native_grouped_path(tmp_path):
    """Guards the check above: the plain grouped composition is XLA-compiled."""
    model = keras.Sequential(
        [keras.Input((8, 8, 4)), keras_igc.IGCConv2D(2, 2, implementation="grouped")]
    )
    model.export(str(tmp_path / "grouped"), verbose=False)
    assert xla_compiled_functions(str(tmp_path / "grouped"))
