"""`TracedModel`: a Functional model whose eager inference call runs as one
traced graph on TensorFlow."""

import weakref

import keras

from keras_igc import inference_folding, keras_internals

# Each model's traced calls, keyed by the model without keeping it alive. Not
# an attribute: TensorFlow would save a `tf.function` attribute into every
# SavedModel of the model, and a deep copy would try to copy it.
_TRACED_CALLS = weakref.WeakKeyDictionary()


@keras.saving.register_keras_serializable(package="keras_igc")
class TracedModel(keras.Model):
    """A Functional model whose eager inference calls run as one graph.

    Built like `keras.Model(inputs, outputs)`; the networks of
    `keras_igc.applications` are `TracedModel`s (MSGC hosts through
    `keras_igc.msgc.MSGCModel`). On TensorFlow an eager `model(x)` otherwise
    runs layer by layer: Keras' Python around each of the network's ~100
    layer calls and every kernel unfused took IGCNet38 at batch 64 2.1x the
    time of `predict_on_batch` (benchmarks/NOTES.md, "An eager model(x)").
    Here an eager call with `training` unset or False runs through a
    `tf.function` of the same call, traced once per input signature and
    state of the layers (execution form, dtype policy), so `model(x)` costs
    what `predict_on_batch` does and returns the same values. The first
    call in each state runs eagerly, the trace comes with the second; the
    traced graph's fused kernels round differently, so the first call's
    values can differ from later ones in float32's last digits.
    Everything else takes Keras' own path: `training=True` (a custom training loop
    under `tf.GradientTape`), symbolic inputs, calls inside a graph (`fit`,
    `predict`, an export), `run_eagerly=True`,
    `tf.config.run_functions_eagerly(True)`, and the JAX and PyTorch
    backends.

    At inference on TensorFlow (`training` unset or False, in the traced call,
    `predict` and an export alike), each BatchNormalization that follows a
    float32 `Conv2D`, `GroupConv2D` or `DepthwiseConv2D` is folded into that
    convolution's kernel and a bias, from the live variables at each call
    (`keras_igc.inference_folding`): TensorFlow then fuses the convolution,
    the bias and the activation into one kernel. The outputs are BatchNorm's
    to float32 rounding. `fold_batch_norm = False` turns this off.

    Build your own like any Functional model; on JAX and PyTorch it is one:

    >>> import keras
    >>> import numpy as np
    >>> import keras_igc
    >>> inputs = keras.Input((8, 8, 12))
    >>> block = keras_igc.IGCConv2D(4, 3, padding="same")(inputs)
    >>> model = keras_igc.TracedModel(
    ...     inputs, keras.layers.GlobalAveragePooling2D()(block))
    >>> x = np.random.rand(2, 8, 8, 12).astype("float32")
    >>> eager = keras.ops.convert_to_numpy(model(x))
    >>> bool(np.allclose(eager, model.predict_on_batch(x), atol=1e-5))
    True
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fold_batch_norm = True

    def call(self, inputs, training=None, mask=None, **kwargs):
        replaced = None
        if (
            self.fold_batch_norm
            and not training
            and mask is None
            and not kwargs
            and keras.backend.backend() == "tensorflow"
        ):
            replaced = inference_folding.folded_operations(
                keras_internals.graph_nodes(self), self.outputs
            )
        if not replaced:
            return super().call(inputs, training=training, mask=mask, **kwargs)
        return keras_internals.run_graph(self, inputs, replaced, training=training)

    def __call__(self, *args, **kwargs):
        if not self._traces(args, kwargs):
            return super().__call__(*args, **kwargs)
        key = self._layer_state()
        entry = _TRACED_CALLS.get(self)
        if entry is None or entry[0] != key:
            # The first call in a state runs as Keras runs it: tracing costs
            # 2-4x an eager call (IGCNet38, MSGC-ResNet50), which a model
            # called once would pay for nothing.
            _TRACED_CALLS[self] = (key, None)
            return super().__call__(*args, **kwargs)
        if entry[1] is None:
            entry = (key, _traced_call(self))
            _TRACED_CALLS[self] = entry
        outputs, losses = entry[1](args, kwargs)
        # `add_loss` in the traced call (an MSGC host's MAC loss) left graph
        # tensors on its layers; the call's values replace them, as an eager
        # call leaves them.
        keras_internals.set_own_losses(self, losses)
        return outputs

    def _traces(self, args, kwargs):
        """Whether this call takes the traced path (see the class docstring)."""
        if keras.backend.backend() != "tensorflow" or kwargs.get("training"):
            return False
        import tensorflow as tf

        if (
            not tf.executing_eagerly()
            or tf.config.functions_run_eagerly()
            or self.run_eagerly
            or keras_internals.in_stateless_scope()
        ):
            return False
        # Tensors and arrays only (a symbolic KerasTensor is neither): any
        # other Python value would be part of the trace's key and retrace it
        # at each new value.
        return all(
            isinstance(value, (tf.Tensor, bool, type(None)))
            or type(value).__module__ == "numpy"
            for value in keras.tree.flatten((args, kwargs))
        )

    def _layer_state(self):
        """What a trace of the call depends on besides the weights' values:
        `fold_batch_norm`, each layer's execution form and dtype policy
        (`model.quantize` changes it); a change traces again."""
        return (self.fold_batch_norm,) + tuple(
            (
                id(getattr(layer, "execution_form", None)),
                layer.dtype_policy.name,
            )
            for layer in keras_internals.all_layers(self)
        )


def _traced_call(model):
    """A `tf.function` of Keras' own call of `model` that also returns each
    layer's `add_loss` values; it holds `model` weakly."""
    import tensorflow as tf

    model_ref = weakref.ref(model)

    def call(args, kwargs):
        model = model_ref()
        outputs = super(TracedModel, model).__call__(*args, **kwargs)
        return outputs, keras_internals.own_losses(model)

    # One trace per model is by design, not the retracing TensorFlow warns of.
    return keras_internals.without_retracing_warning(
        tf.function(call, reduce_retracing=True)
    )
