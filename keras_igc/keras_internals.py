"""Every private Keras (and TensorFlow, and LiteRT) API keras_igc relies on, in
one place.

Keras 3 has no public way to do these; each helper says what it needs, so an
upgrade that moves them breaks this file alone (checked against Keras 3.15 and
TensorFlow 2.21; `tests/test_packaging.py` keeps other modules off `keras.src`
and private attributes).
"""

import contextlib
import functools

import keras


def obtain_input_shape(input_shape, default_size, min_size, require_flatten):
    """keras.applications' input-shape rule, with its errors (channels last)."""
    from keras.src.applications import imagenet_utils

    return imagenet_utils.obtain_input_shape(
        input_shape,
        default_size=default_size,
        min_size=min_size,
        data_format="channels_last",
        require_flatten=require_flatten,
        weights=None,
    )


def validate_classifier_activation(activation):
    """keras.applications' check of `classifier_activation`."""
    from keras.src.applications import imagenet_utils

    imagenet_utils.validate_activation(activation, None)


def is_graph_model(model):
    """Whether `model` is a Functional graph (not subclassed), whose nodes
    can be walked and whose layers' inputs can be tapped."""
    return hasattr(model, "_nodes_by_depth") and not isinstance(model, keras.Sequential)


def graph_nodes(model):
    """The nodes of this model's graph only (a loaded layer also keeps the
    node of the call that built it)."""
    return [node for depth in model._nodes_by_depth.values() for node in depth]


def graph_nodes_in_order(model):
    """The nodes of this model's graph, each after the nodes it reads."""
    by_depth = model._nodes_by_depth
    order = sorted(by_depth, reverse=True)
    return [node for depth in order for node in by_depth[depth]]


def call_inputs(layer):
    """The input tensors of a layer's first call in a Functional graph."""
    return layer._inbound_nodes[0].input_tensors


def producer(tensor):
    """The layer (operation) whose call in a Functional graph made the
    symbolic `tensor`."""
    return tensor._keras_history.operation


def was_called(layer):
    """Whether `layer` was called in a Functional graph (a layer nested in
    another, e.g. a wrapper's sublayer, was not)."""
    return bool(layer._inbound_nodes)


def all_layers(model):
    """Every layer of `model`, nested ones included."""
    return list(model._flatten_layers())


def in_stateless_scope():
    """Whether a `keras.StatelessScope` is active (its variable values are
    not the variables')."""
    from keras.src import backend

    return backend.in_stateless_scope()


def own_losses(model):
    """The `add_loss` values each layer of `model` holds, itself first, in
    `all_layers`' order."""
    return [list(layer._losses) for layer in all_layers(model)]


def set_own_losses(model, losses):
    """Put back `own_losses(model)`'s values (from a traced call) on its
    layers."""
    for layer, values in zip(all_layers(model), losses, strict=True):
        layer._losses[:] = values


def run_graph(model, inputs, replaced, training=None):
    """What `Functional.call(inputs, training=training)` computes, except that
    each operation whose `id` is in `replaced` is computed by the callable
    there (called with the operation's arguments) instead of its own call."""
    from keras.src.models import functional

    def operation(op):
        return replaced.get(id(op)) or functional.operation_fn(op, training=training)

    outputs = model._run_through_graph(
        model._standardize_inputs(inputs), operation_fn=operation
    )
    return functional.unpack_singleton(outputs)


def graph_owner(model, layer):
    """The Functional model, `model` or one nested in it, whose graph calls
    `layer` directly, so that a probe `keras.Model(owner.input, ...)` reaches
    the layer's inputs (a keras-hub task holds its network as a nested model)."""
    for candidate in [model, *all_layers(model)]:
        if is_graph_model(candidate) and any(
            node in graph_nodes(candidate) for node in layer._inbound_nodes
        ):
            return candidate
    raise ValueError(f"{layer.name!r} is not called in the graph of {model.name!r}.")


def build_metrics(model, element_spec):
    """Build the model, its compiled metrics and optimizer from a dataset's
    element spec now. On one device Keras builds them inside the first traced
    step of `fit` or `evaluate`, and a `tf.function` that creates variables
    while tracing is traced twice: a third of a short run's time."""
    model._symbolic_build(data_batch=element_spec)


def build_for_data(model, element_spec):
    """`build_metrics`, and stop `fit` from building them again (it would
    peek a batch)."""
    build_metrics(model, element_spec)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def without_retracing_warning(function):
    """`function` (a `tf.function`) that never logs TensorFlow's "N out of the
    last N calls ... triggered tf.function retracing". TensorFlow counts the
    traces of every `tf.function` of the same Python code together, so one
    trace per model of `TracedModel`'s call warned after five models; that
    flag has no public setter."""
    function._omit_frequent_tracing_warning = True
    return function


@functools.cache
def tensorflow_onednn():
    """Whether TensorFlow runs its CPU kernels through oneDNN (the default on
    x86; `TF_ENABLE_ONEDNN_OPTS=0` turns it off). Only then does
    `tf.nn.conv2d` have a fast grouped kernel on CPU, with gradients."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def seed_generators(model):
    """Every `keras.random.SeedGenerator` the layers of `model` draw from
    (dropout, Gumbel noise), in layer order. Their states are variables that
    `save_weights` leaves out, so an exact resume saves them itself."""
    return [
        generator
        for layer in all_layers(model)
        for generator in getattr(layer, "_seed_generators", [])
    ]


@contextlib.contextmanager
def op_determinism():
    """TensorFlow's op determinism for the duration (every kernel either
    deterministic or an error), set back as it was afterwards: TensorFlow has
    `enable_op_determinism` only in its public API."""
    from tensorflow.python.framework import config

    was = config.is_op_determinism_enabled()
    config.enable_op_determinism()
    try:
        yield
    finally:
        if not was:
            config.disable_op_determinism()


def litert_ops(interpreter):
    """The ops of a LiteRT interpreter's graph (dicts with `op_name`): its
    `_get_ops_details`, which has no public twin in `tf.lite` or
    `ai_edge_litert`."""
    return interpreter._get_ops_details()
