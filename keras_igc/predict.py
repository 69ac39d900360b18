"""Classify image files with a model file, as `keras-igc predict` does.

The model file is what a user ships: a `.keras` model (`train`'s, yours, a
converted checkpoint), a release's `.params` checkpoint, or an exported
`.tflite` or `.onnx` file (float or int8). Each image is prepared as the
model's training images were (`keras_igc.preprocessing`: the record `train`
writes beside the model and `export` copies beside its files), and the top
classes come with their names where the record has them.
"""

import os

import numpy as np

from keras_igc import preprocessing

# The model files predict reads besides the exported ones, whose endings the
# runtimes' adapters say (`keras_igc.export.runtimes`).
KERAS_FILE_KINDS = (".keras", ".params")


def load_model(path):
    """`(run, input_shape, classes)` of a model file: `run(batch)` gives
    its outputs, `input_shape` is `(height, width, channels)`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    from keras_igc.export import runtimes

    adapter = runtimes.for_file(path)
    if adapter is not None:
        try:
            run = adapter.runner(path)()
            inputs, outputs = adapter.io_shapes(path)
        except ImportError:  # a runtime not installed: its message names the extra
            raise
        except Exception as error:  # each runtime raises types of its own
            raise ValueError(
                f"{path!r} could not be loaded as a {os.path.splitext(path)[1]} "
                f"model ({type(error).__name__}: {str(error)[:200]}); it may be "
                f"truncated, or not a model file. Export it again."
            ) from None
        return run, inputs[1:], outputs[-1]
    if path.endswith(".params"):
        from keras_igc import applications

        model = applications.from_release_weights(path)
    elif path.endswith(".keras"):
        from keras_igc.saving import load_keras_model

        model = load_keras_model(path)
    else:
        raise ValueError(
            f"{path!r} is not a model file predict reads: pass one ending in "
            f"{', '.join(file_kinds())}."
        )
    if len(model.inputs) != 1 or len(model.input_shape) != 4:
        raise ValueError(
            f"{path!r} takes inputs {model.input_shape}; predict classifies "
            f"images with models of one (batch, height, width, channels) input."
        )
    return model.predict_on_batch, tuple(model.input_shape[1:]), model.output_shape[-1]


def file_kinds():
    """The endings of the model files predict reads."""
    from keras_igc.export import runtimes

    return (*KERAS_FILE_KINDS, *(a.SUFFIX for a in runtimes.ADAPTERS if a.SUFFIX))


def record_for(path, input_shape, classes, mode=None):
    """How images become the input of the model file at `path`: the record
    beside it (`preprocessing.read`), or, with `mode` or without a record,
    the named normalisation (`preprocessing.for_normalization`; default the
    IGC release's, for ImageNet checkpoints)."""
    height, width, channels = input_shape
    record = None if mode is not None else preprocessing.read(path)
    if record is None:
        size = (height or 224, width or 224)
        record = preprocessing.for_normalization(
            mode or "igc-release", size, channels, classes
        )
    size = (height or record.image_size[0], width or record.image_size[1])
    if size != tuple(record.image_size) or channels != record.channels:
        raise ValueError(
            f"The preprocessing record beside {path!r} ({record.source}: "
            f"{record.image_size} x {record.channels} channels) does not fit the "
            f"model's input {input_shape}: the record belongs to another model. "
            f"Remove it or pass --preprocess."
        )
    return record


def classify(model_path, images, top=5, mode=None):
    """`[(image path, [(label, probability), ...]), ...]` for image files.

    Args:
        model_path: a `.keras`, `.params`, `.tflite` or `.onnx` file.
        images: image file paths.
        top: how many classes per image.
        mode: a normalisation of `keras_igc.statistics.NORMALIZATIONS` to use
            instead of the record beside the model (default: the record; the
            IGC release's ImageNet normalisation where there is none).
    """
    run, input_shape, classes = load_model(model_path)
    record = record_for(model_path, input_shape, classes, mode)
    batch = np.stack([record.load_image(path) for path in images])
    scores = np.asarray(run(batch), "float32")
    if not _are_probabilities(scores):
        shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores = shifted / shifted.sum(axis=-1, keepdims=True)
    names = record.class_names
    if names is not None and len(names) != scores.shape[-1]:
        names = None
    results = []
    for path, row in zip(images, scores, strict=True):
        best = np.argsort(row)[::-1][:top]
        results.append(
            (path, [(names[i] if names else f"class {i}", float(row[i])) for i in best])
        )
    return results


def _are_probabilities(scores):
    """Whether each row is already a distribution (a softmax classifier; an
    int8 file's sums are off by a few quantization steps)."""
    return bool(
        np.all(scores >= 0) and np.allclose(scores.sum(axis=-1), 1.0, atol=0.02)
    )
