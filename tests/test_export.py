"""keras_igc.export: SavedModel, LiteRT, ONNX, folding, check (TensorFlow only)."""

import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from harness import assert_close
from tensorflow.core.protobuf import saved_model_pb2

import keras_igc
from keras_igc import applications, cli, export, forms

pytestmark = pytest.mark.tensorflow_only

RELOAD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import tensorflow as tf
    path, inputs = sys.argv[1:3]
    x = np.load(inputs)
    loaded = tf.saved_model.load(path)
    served = loaded.serve(x).numpy()
    layer = keras.layers.TFSMLayer(path, call_endpoint="serve")
    from_layer = keras.ops.convert_to_numpy(layer(x))
    imported = any(name.startswith("keras_igc") for name in sys.modules)
    np.save(inputs + ".served.npy", served)
    np.save(inputs + ".layer.npy", from_layer)
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


def with_trained_statistics(model, seed=0):
    """Give every BatchNorm the statistics of a data batch and a random affine,
    as after training (random-init networks blow up in inference mode)."""
    rng = np.random.default_rng(seed)
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    for layer in norms:
        n = layer.moving_mean.shape[0]
        if layer.scale:
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
        if layer.center:
            layer.beta.assign(rng.normal(0, 0.1, n).astype("float32"))
        layer.momentum = 0.0  # the moving statistics become this batch's
    x = rng.normal(size=(8, *model.input_shape[1:])).astype("float32")
    model(x, training=True)
    for layer in norms:
        layer.momentum = 0.99
    return model


def small_network(implementation="auto"):
    """IGC blocks with and without bias, a grouped and a regular conv, BatchNorms."""
    return with_trained_statistics(
        keras.Sequential(
            [
                keras.Input((16, 16, 8)),
                keras.layers.Conv2D(16, 3, padding="same", use_bias=False),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras_igc.IGCConv2D(
                    8, 2, padding="same", use_bias=False, implementation=implementation
                ),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras_igc.IGCConv2D(
                    2, 16, strides=2, padding="same", implementation=implementation
                ),
                keras.layers.BatchNormalization(center=False, scale=False),
                keras.layers.ReLU(),
                keras.layers.Conv2D(32, 1, groups=4),
                keras.layers.BatchNormalization(),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(5),
            ]
        )
    )


def layer_alone():
    return keras.Sequential(
        [keras.Input((12, 12, 16)), keras_igc.IGCConv2D(4, 4, 3, padding="same")]
    )


def small_igcnet():
    """A depth-8 residual IGC net: IGC blocks and grouped projections."""
    return with_trained_statistics(
        applications.igc_cifar_network(
            8, residual=True, classifier_activation=None, classes=7
        )
    )


@pytest.fixture(scope="module", params=["network", "layer", "igcnet"])
def exported(request, tmp_path_factory):
    model = {"network": small_network, "layer": layer_alone, "igcnet": small_igcnet}[
        request.param
    ]()
    directory = str(tmp_path_factory.mktemp(request.param))
    return model, export.export(model, directory, verbose=False)


def test_every_format_matches_keras_at_batch_1_and_3(exported):
    model, result = exported
    rows = export.check(model, result.artifacts, batch_sizes=(1, 3), runs=2)
    assert {(r["format"], r["batch"]) for r in rows} == {
        (f, b) for f in ["keras", "savedmodel", "litert", "onnx"] for b in (1, 3)
    }
    for row in rows:
        assert row["max_abs_diff"] <= 1e-4 * row["max_abs_output"], row
        assert row["latency_ms"] > 0


def test_export_writes_a_report_and_uses_builtin_litert_ops(exported):
    _, result = exported
    directory = os.path.dirname(result.artifacts["onnx"])
    with open(os.path.join(directory, export.REPORT_FILE)) as f:
        report = json.load(f)
    assert report["sizes"] == result.sizes and min(result.sizes.values()) > 0
    assert result.litert_select_ops == []
    assert sorted(os.listdir(directory)) == sorted(
        [*export.FORMATS.values(), export.REPORT_FILE]
    )


def test_check_reads_an_export_directory(exported):
    model, result = exported
    directory = os.path.dirname(result.artifacts["onnx"])
    rows = export.check(model, directory, batch_sizes=(2,), runs=1)
    assert [r["format"] for r in rows] == ["keras", "savedmodel", "litert", "onnx"]


@pytest.mark.parametrize("batch", [1, 3])
def test_savedmodel_runs_in_a_fresh_process_without_keras_igc_or_xla(tmp_path, batch):
    model = small_network()
    result = export.export(model, str(tmp_path), ["savedmodel"], verbose=False)
    x = np.random.default_rng(0).normal(size=(batch, 16, 16, 8)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["KERAS_BACKEND"] = "tensorflow"
    process = subprocess.run(
        [sys.executable, "-c", RELOAD, result.artifacts["savedmodel"], "x.npy"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert json.loads(process.stdout.strip().splitlines()[-1]) == {
        "keras_igc_imported": False
    }
    expected = model(x, training=False)
    assert_close(np.load(tmp_path / "x.npy.served.npy"), expected, rel=1e-4)
    assert_close(np.load(tmp_path / "x.npy.layer.npy"), expected, rel=1e-4)


def test_export_replaces_the_xla_grouped_path(tmp_path):
    model = small_network(implementation="grouped")
    for form in ("grouped", "igc"):
        result = export.export(
            model, str(tmp_path / form), ["savedmodel"], block_form=form,
            verbose=False,
        )  # fmt: skip
        assert xla_compiled_functions(result.artifacts["savedmodel"]) == []
        blocks = result.folding["savedmodel"].blocks
        assert [b["form"] for b in blocks] == [form, form]


def onnx_group_sizes(path):
    import onnx

    return sorted(
        attribute.i
        for node in onnx.load(path).graph.node
        if node.op_type == "Conv"
        for attribute in node.attribute
        if attribute.name == "group" and attribute.i > 1
    )


def onnx_transposes(path):
    import onnx

    return [
        list(attribute.ints)
        for node in onnx.load(path).graph.node
        if node.op_type == "Transpose"
        for attribute in node.attribute
    ]


def litert_op_names(path):
    interpreter = export.litert.make_interpreter(model_path=path)
    return {op["op_name"] for op in interpreter._get_ops_details()}


def litert_conv_filters(path):
    """`(op name, filter shape)` of every convolution in a LiteRT file."""
    interpreter = export.litert.make_interpreter(model_path=path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return sorted(
        (op["op_name"], tuple(tensors[op["inputs"][1]]["shape"]))
        for op in interpreter._get_ops_details()
        if "CONV" in op["op_name"]
    )


@pytest.mark.parametrize(
    "form, groups, secondary_filters",
    [
        # Two IGC blocks: L=8 (M=2) and L=2 (M=16).
        ("grouped", [2, 2, 8, 16], [(16, 1, 1, 8), (32, 1, 1, 2)]),
        ("grouped_primary", [2, 8], [(16, 1, 1, 16), (32, 1, 1, 32)]),
    ],
)
@pytest.mark.parametrize("onednn", [True, False])
def test_grouped_forms_are_each_runtimes_grouped_convolutions(
    tmp_path, monkeypatch, onednn, form, groups, secondary_filters
):
    """ONNX `Conv` with `group`, LiteRT's grouped `CONV_2D` (filters of M
    input channels for the primary, L for a grouped secondary), whatever
    kernels the exporting machine has."""
    if not onednn:  # as without oneDNN: no fast grouped kernel here
        monkeypatch.setattr(forms, "tensorflow_grouped_kernel", lambda dtype: False)
    model = small_network()
    result = export.export(
        model, str(tmp_path), ["litert", "onnx"], block_form=form, verbose=False
    )
    assert onnx_group_sizes(result.artifacts["onnx"]) == groups
    # Each permutation is one transpose of the NCHW tensor (4 in the grouped
    # form: two blocks, two permutations each), none of tf2onnx's NHWC ones.
    transposes = onnx_transposes(result.artifacts["onnx"])
    assert transposes.count([0, 2, 1, 3]) == (4 if form == "grouped" else 0)
    assert [0, 2, 1] not in transposes
    # The folded BatchNorms' biases are the convolutions' own (in the grouped
    # form added before the inverse permutation), not separate Adds.
    import onnx

    graph = onnx.load(result.artifacts["onnx"]).graph
    assert "Add" not in [node.op_type for node in graph.node]
    # Each ReLU reads a convolution (moved before the inverse permutation in
    # the grouped form), which ONNX Runtime fuses into it.
    made = {out: node.op_type for node in graph.node for out in node.output}
    relus = [node for node in graph.node if node.op_type == "Relu"]
    assert len(relus) == 3 and all(made[n.input[0]] == "Conv" for n in relus)
    convolutions = litert_conv_filters(result.artifacts["litert"])
    for filters in [(16, 3, 3, 2), (32, 3, 3, 8), *secondary_filters]:
        assert ("CONV_2D", filters) in convolutions
    assert result.litert_select_ops == []
    # The permutations' reshapes are static: XNNPACK takes the whole graph
    # (a reshape to a computed shape would stay outside it and split it).
    assert "SHAPE" not in litert_op_names(result.artifacts["litert"])
    for row in export.check(model, result.artifacts, batch_sizes=(1, 4), runs=1):
        assert row["max_abs_diff"] <= 1e-4 * row["max_abs_output"], row


def narrow_groups_network():
    """A grouped 1x1 projection of one input and two outputs per group and an
    IGC block of M=2 (IGC-L100M2's narrow groups, 20 of them), BatchNorms."""
    inputs = keras.Input((8, 8, 20))
    x = keras_igc.GroupConv2D(40, 1, groups=20, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras_igc.IGCConv2D(20, 2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    return with_trained_statistics(keras.Model(inputs, x))


def test_grouped_projections_and_narrow_groups_in_each_runtime(tmp_path):
    """The projection stays grouped in every format (not its 20x denser
    block-diagonal kernel); LiteRT runs 5 narrow groups as one (4 groups of
    10 outputs), the SavedModel 4 (5 groups of 8), ONNX keeps all 20; the
    outputs stay Keras'."""
    model = narrow_groups_network()
    result = export.export(model, str(tmp_path), verbose=False)
    litert, onnx = result.folding["litert"], result.folding["onnx"]
    assert [c["form"] for c in litert.grouped_convs] == ["grouped"]
    assert [c["groups"] for c in litert.grouped_convs] == [4]
    assert [b["primary_groups"] for b in litert.blocks] == [4]
    assert "as 4 groups of 5" in litert.blocks[0]["why"]
    assert [c["groups"] for c in onnx.grouped_convs] == [20]
    assert [b["primary_groups"] for b in onnx.blocks] == [20]
    # TensorFlow merges up to 8 outputs a group: 4 groups of 2 -> 5 groups.
    savedmodel = result.folding["savedmodel"]
    assert [c["groups"] for c in savedmodel.grouped_convs] == [5]
    assert [b["primary_groups"] for b in savedmodel.blocks] == [5]
    assert onnx_group_sizes(result.artifacts["onnx"]) == [20, 20]
    convolutions = litert_conv_filters(result.artifacts["litert"])
    # (out, kh, kw, inputs per group): the projection's merged groups read
    # 5 channels, the primary's 10.
    assert ("CONV_2D", (40, 1, 1, 5)) in convolutions
    assert ("CONV_2D", (40, 3, 3, 10)) in convolutions
    assert "grouped convolutions: 1 grouped" in litert.summary()
    for row in export.check(model, result.artifacts, batch_sizes=(1, 3), runs=1):
        assert row["max_abs_diff"] <= 1e-4 * row["max_abs_output"], row


def test_explicit_forms_keep_every_group(tmp_path):
    """Merging is part of "auto"; a form given by name is emitted as named."""
    model = narrow_groups_network()
    prepared, report = export.prepare(
        model, runtime="litert", block_form="grouped_primary",
        grouped_conv_form="dense",
    )  # fmt: skip
    assert [c["form"] for c in report.grouped_convs] == ["dense"]
    assert [c["groups"] for c in report.grouped_convs] == [None]
    assert [b["primary_groups"] for b in report.blocks] == [20]
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 20)).astype("float32")
    assert_close(
        np.asarray(prepared(x)), np.asarray(model(x, training=False)), rel=1e-4
    )


def test_litert_reshapes_are_static_in_the_depthwise_primaries(tmp_path):
    """The "igc" form's depthwise primaries (M > 1 inputs: a sum over a
    reshaped depthwise output) write no SHAPE op either."""
    result = export.export(
        small_igcnet(), str(tmp_path), ["litert"], block_form="igc", verbose=False
    )
    names = litert_op_names(result.artifacts["litert"])
    assert "DEPTHWISE_CONV_2D" in names and "SHAPE" not in names


@pytest.mark.parametrize(
    "runtime, L, M, form",
    [
        ("onnx", 24, 2, "grouped_primary"),  # IGCNet38 stage 1: L*(M-1) = 24
        ("onnx", 24, 4, "grouped"),  # L*(M-1) = 72
        ("onnx", 100, 2, "grouped"),
        ("litert", 24, 8, "grouped_primary"),  # L*(M-1) = 168
        ("litert", 100, 2, "grouped_primary"),  # IGC-L100M2+Ident. stage 1: 100
        ("litert", 200, 2, "grouped"),  # its stage 2: L*(M-1) = 200
        ("litert", 100, 4, "grouped"),  # L*(M-1) = 300
        ("litert", 100, 16, "grouped"),
        ("litert", 4, 8, "dense"),  # IGC-L4M8 stage 1: 3x3x32x32 dense kernel
        ("litert", 4, 16, "grouped_primary"),
        ("savedmodel", 100, 16, "grouped_primary"),
        (None, 24, 2, "dense"),  # the Keras CPU rule: a small dense kernel
        (None, 100, 2, "igc"),
    ],
)
def test_the_measured_rule_picks_each_runtimes_fastest_form(runtime, L, M, form):
    chosen, why = rule_form(runtime, L, M, (3, 3), (1, 1))
    assert chosen == form
    assert why


def rule_form(runtime, L, M, kernel_size, strides, group_inputs=None):
    """`(form, why)` of the rule of `runtime` (None: any converter) for an
    IGC block."""
    geometry = forms.Geometry(L, group_inputs or M, M, kernel_size, strides)
    choice = forms.decide("igc_block", runtime or "converter", geometry)
    return choice.form, choice.why


@pytest.mark.parametrize("runtime", [None, *export.folding.RUNTIMES])
@pytest.mark.parametrize("form", export.BLOCK_FORMS)
def test_every_block_form_keeps_the_outputs(runtime, form):
    model = small_igcnet()
    folded, report = export.prepare(model, runtime=runtime, block_form=form)
    x = np.random.default_rng(7).normal(size=(2, 32, 32, 3)).astype("float32")
    assert_close(folded(x), model(x, training=False), rel=1e-4)
    igc = [l.name for l in model.layers if isinstance(l, keras_igc.IGCConv2D)]
    assert [b["layer"] for b in report.blocks] == igc
    assert all(b["why"] for b in report.blocks)
    if form == "auto_sparse":
        assert "dense" not in {b["form"] for b in report.blocks}
    elif form != "auto":
        assert {b["form"] for b in report.blocks} == {form}


def test_the_report_says_each_formats_block_forms_and_why(tmp_path):
    model = small_igcnet()
    result = export.export(model, str(tmp_path), verbose=False)
    with open(tmp_path / export.REPORT_FILE) as f:
        report = json.load(f)
    igc = [l for l in model.layers if isinstance(l, keras_igc.IGCConv2D)]
    for fmt in export.FORMATS:
        blocks = report["folding"][fmt]["blocks"]
        assert len(blocks) == len(igc) and report["folding"][fmt]["runtime"] == fmt
        for block in blocks:
            layer = model.get_layer(block["layer"])
            form, why = rule_form(
                fmt, *_partitions(layer), group_inputs=layer.primary.kernel.shape[2]
            )
            # LiteRT and the SavedModel may merge narrow primary partitions;
            # the why says so.
            assert block["form"] == form and block["why"].startswith(why)
        assert result.folding[fmt].blocks == blocks


def _partitions(layer):
    return (
        layer.primary_partitions,
        layer.secondary_partitions,
        layer.kernel_size,
        layer.strides,
    )


def test_bad_block_forms_and_runtimes_are_named():
    model = small_network()
    with pytest.raises(ValueError, match="block_form='sparse'"):
        export.prepare(model, block_form="sparse")
    with pytest.raises(ValueError, match="grouped_conv_form='sparse'"):
        export.prepare(model, grouped_conv_form="sparse")
    with pytest.raises(ValueError, match="runtime='tflite'"):
        export.prepare(model, runtime="tflite")


def test_the_xla_check_sees_the_native_grouped_path(tmp_path):
    """Guards the check above: Keras' own export keeps the XLA function."""
    model = small_network(implementation="grouped")
    model.export(str(tmp_path / "grouped"), verbose=False)
    assert xla_compiled_functions(str(tmp_path / "grouped"))


def test_onnx_export_refuses_what_tf2onnx_cannot_convert(tmp_path):
    """tf2onnx writes the XLA grouped convolution as an unloadable node."""
    model = small_network(implementation="grouped")
    model(np.zeros((1, 16, 16, 8), "float32"))
    with pytest.raises(RuntimeError, match="PartitionedCall"):
        export.onnx.write(model, str(tmp_path / "model.onnx"))
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("block_form", ["auto", "dense", "auto_sparse"])
def test_folding_keeps_outputs_and_removes_every_batch_norm(block_form):
    model = small_network()
    folded, report = export.prepare(model, block_form=block_form)
    x = np.random.default_rng(1).normal(size=(3, 16, 16, 8)).astype("float32")
    assert_close(folded(x), model(x, training=False), rel=1e-4)
    assert not any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers
    )
    assert len(report.folded) == 4
    igc_forms = {e["form"] for e in report.folded if e["into"].startswith("igc")}
    expected = {"dense": {"dense"}, "auto_sparse": {"igc"}, "auto": {"dense"}}
    assert igc_forms == expected[block_form]
    if block_form == "auto_sparse":
        assert report.after["macs"] == report.before["macs"]
    else:
        assert report.after["macs"] > report.before["macs"]


def test_auto_folds_into_the_dense_kernel_only_where_it_is_small():
    # small_network's blocks have dense kernels within SMALL_DENSE_KERNEL; the
    # 3x3x200x200 one of an L100M2 block is not, so it stays an IGC block.
    model = with_trained_statistics(
        keras.Sequential(
            [
                keras.Input((8, 8, 200)),
                keras_igc.IGCConv2D(100, 2, padding="same", use_bias=False),
                keras.layers.BatchNormalization(),
            ]
        )
    )
    folded, report = export.prepare(model)
    assert [e["form"] for e in report.folded] == ["igc"]
    assert report.paths == {model.layers[0].name: "depthwise"}
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 200)).astype("float32")
    assert_close(folded(x), model(x, training=False), rel=1e-4)


def test_residual_network_folds_and_keeps_outputs():
    model = small_igcnet()
    folded, report = export.prepare(model)
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    assert_close(folded(x), model(x, training=False), rel=1e-4)
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(report.folded) == len(norms)


def test_batch_norm_after_a_shared_output_is_not_folded():
    inputs = keras.Input((8, 8, 8))
    conv = keras_igc.IGCConv2D(4, 2, padding="same")(inputs)
    outputs = keras.layers.Add()([keras.layers.BatchNormalization()(conv), conv])
    model = with_trained_statistics(keras.Model(inputs, outputs))
    folded, report = export.prepare(model)
    assert report.folded == []
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 8)).astype("float32")
    assert_close(folded(x), model(x, training=False), rel=1e-5)


def test_no_fold_keeps_batch_norms(tmp_path):
    model = small_network()
    folded, report = export.prepare(model, fold=False)
    assert report.folded == []
    assert report.after == report.before
    x = np.random.default_rng(5).normal(size=(1, 16, 16, 8)).astype("float32")
    assert_close(folded(x), model(x, training=False), rel=1e-5)


def test_mixed_precision_model_exports_in_float32(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = small_network()
    finally:
        keras.config.set_dtype_policy("float32")
    folded, _ = export.prepare(model)
    assert {layer.compute_dtype for layer in folded.layers} == {"float32"}
    # The float32 clone computes what the float16 model approximates.
    x = np.random.default_rng(6).normal(size=(2, 16, 16, 8)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x, training=False)).astype("float32")
    got = keras.ops.convert_to_numpy(folded(x))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-2 * np.abs(expected).max())


def test_existing_artifacts_need_overwrite_and_other_files_survive(tmp_path):
    model = layer_alone()
    export.export(model, str(tmp_path), ["litert"], verbose=False)
    (tmp_path / "notes.txt").write_text("mine")
    before = (tmp_path / "model.tflite").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export(model, str(tmp_path), ["litert", "onnx"], verbose=False)
    assert not (tmp_path / "model.onnx").exists()
    assert (tmp_path / "model.tflite").read_bytes() == before
    export.export(model, str(tmp_path), ["litert"], overwrite=True, verbose=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "where, message",
    [("a-file", "is a file"), ("a-file/below", "is not a writable folder")],
)
def test_an_export_folder_that_cannot_be_one_is_named(tmp_path, where, message):
    (tmp_path / "a-file").write_text("mine")
    target = str(tmp_path / where)
    with pytest.raises(ValueError, match=f"{re.escape(repr(target))}.*{message}"):
        export.export(layer_alone(), target, ["litert"], verbose=False)
    assert (tmp_path / "a-file").read_text() == "mine"


def test_a_killed_export_leaves_nothing_the_next_one_trips_on(tmp_path):
    """`kill -9` mid-export (as a crash in a converter would end it): the next
    export succeeds, and no scratch folder is left."""
    import signal
    import time

    path = str(tmp_path / "m.keras")
    small_network().save(path)
    out = tmp_path / "out"
    script = os.path.join(os.path.dirname(sys.executable), "keras-igc")
    args = [script, "export", path, "--output", str(out)]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        if out.is_dir() and any(p.startswith(".export-") for p in os.listdir(out)):
            break
        time.sleep(0.05)
    assert child.poll() is None, "the export ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert any(p.startswith(".export-") for p in os.listdir(out))
    assert not (out / "model.onnx").exists()
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(os.listdir(out)) == sorted(
        ["export_report.json", "model.onnx", "model.tflite", "saved_model"]
    )


def test_unbuilt_model_is_an_error(tmp_path):
    model = keras.Sequential([keras_igc.IGCConv2D(2, 2)])
    with pytest.raises(ValueError, match="not built.*keras.Input"):
        export.export(model, str(tmp_path), verbose=False)


def test_unknown_format_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"'tflite'.*'litert'"):
        export.export(layer_alone(), str(tmp_path), ["tflite"], verbose=False)


def test_subclassed_model_is_an_error(tmp_path):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.block = keras_igc.IGCConv2D(2, 2)

        def call(self, x):
            return self.block(x)

    model = Net()
    model(np.zeros((1, 8, 8, 4), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        export.export(model, str(tmp_path), verbose=False)


def test_missing_onnx_converter_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import raises ImportError
    with pytest.raises(export.MissingDependencyError, match=r"keras-igc\[export\]"):
        export.export(layer_alone(), str(tmp_path), ["onnx"], verbose=False)
    assert os.listdir(tmp_path) == []


def test_load_source_names_and_files(tmp_path):
    assert export.load_source("IGCNet8").name.startswith("igc")
    assert export.load_source("RegConv-W16", depth=8).count_params() > 0
    path = str(tmp_path / "m.keras")
    layer_alone().save(path)
    assert isinstance(export.load_source(path).layers[0], keras_igc.IGCConv2D)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        export.load_source(str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match="Unknown model name"):
        export.load_source("IGCNet9")


def test_cli_exports_and_checks(tmp_path, capsys):
    path = str(tmp_path / "m.keras")
    small_network().save(path)
    out = str(tmp_path / "out")
    code = cli.main(["export", path, "--output", out, "--check"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "| onnx | 3 |" in printed and "folded 4 BatchNorm" in printed
    assert cli.main(["export", path, "--output", out]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["export", path, "--output", out, "--formats", "pb"]) == 2
    forced = str(tmp_path / "forced")
    args = ["export", path, "--output", forced, "--formats", "onnx"]
    assert cli.main([*args, "--grouped-conv-form", "grouped"]) == 0
    with open(os.path.join(forced, export.REPORT_FILE)) as f:
        (conv,) = json.load(f)["folding"]["onnx"]["grouped_convs"]
    assert (conv["form"], conv["groups"]) == ("grouped", 4)


def test_igcv3_folds_every_batch_norm_and_shuffles_without_gathers(tmp_path):
    """IGCV3's BatchNorms after its depthwise convolutions fold too (a Mul and
    an Add each were left in the graphs), and its channel shuffles reach ONNX
    as one NCHW transpose each: no Gather, no layout transposes around them
    (2 per block were); the outputs stay Keras'."""
    model = applications.IGCV3(0.25, input_shape=(64, 64, 3), classes=10)
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    for layer in norms:  # statistics that are not the identity
        layer.moving_variance.assign(
            np.linspace(0.5, 1.5, layer.moving_variance.shape[0])
        )
    result = export.export(model, str(tmp_path), ["onnx", "litert"], verbose=False)
    onnx_model = __import__("onnx").load(result.artifacts["onnx"])
    ops = [node.op_type for node in onnx_model.graph.node]
    assert len(result.folding["onnx"].folded) == len(norms) == 98
    assert "Gather" not in ops and "Mul" not in ops
    # One transpose for the NHWC input and one per block's shuffle; the four
    # stride-2 blocks' symmetric Pad runs on NHWC between two more (ONNX
    # Runtime's optimizer folds the three into the depthwise convolution).
    assert ops.count("Pad") == 4
    assert ops.count("Transpose") == 1 + 32 + 2 * 4
    for row in export.check(model, result.artifacts, batch_sizes=(1, 3), runs=1):
        assert row["max_abs_diff"] <= 1e-4 * max(row["max_abs_output"], 1e-3), row


def test_the_runtimes_take_omp_num_threads(monkeypatch):
    """ONNX Runtime and LiteRT run on OMP_NUM_THREADS threads where it is set
    (two processes sharing the cores), else on every core."""
    from keras_igc.export.dependencies import runtime_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime_threads() == 3
    for unusable in ("0", "two", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert runtime_threads() == (os.cpu_count() or 1)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert runtime_threads() == (os.cpu_count() or 1)
