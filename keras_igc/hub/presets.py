"""keras-hub presets of keras_igc's networks, from the authors' checkpoints or
from a network of `keras_igc.applications`."""

import os
import shutil

from keras_igc.applications import registry
from keras_igc.applications.weights.checkpoints import from_checkpoint
from keras_igc.hub.igc_backbone import IGCBackbone
from keras_igc.hub.igc_image_classifier import IGCImageClassifier
from keras_igc.hub.igc_image_converter import IGCImageConverter
from keras_igc.hub.msgc_backbone import MSGCBackbone
from keras_igc.hub.msgc_image_classifier import MSGCImageClassifier
from keras_igc.hub.msgc_image_converter import MSGCImageConverter
from keras_igc.validation import image_size as check_image_size


def convert_to_preset(
    checkpoint, preset_dir, *, expect=None, image_size=(224, 224), overwrite=False
):
    """Write a keras-hub preset folder from an authors' checkpoint.

    The checkpoint is an IGC release `.params` file (MXNet), an MSGC release
    `.pth`/`.pth.tar` or a torchvision state_dict (an MSGC host whose gates
    start open); reading `.pth` needs PyTorch. The preset holds an
    `IGCImageClassifier` or `MSGCImageClassifier` (logits) with its
    preprocessor, which resizes to `image_size` and normalises as the
    checkpoint's release did. Load it with `keras_hub.models.ImageClassifier
    .from_preset(preset_dir)` (after `import keras_igc.hub`), share it with
    `keras_hub.upload_preset("hf://user/name", preset_dir)`.

    Args:
        checkpoint: the checkpoint's path.
        preset_dir: the folder to write; it is written under a temporary name
            and renamed into place.
        expect: optional paper or registered name the file must hold.
        image_size: `(height, width)` the preprocessor resizes to.
        overwrite: replace an existing `preset_dir`.

    Returns:
        The classifier that was saved.
    """
    image_size = check_image_size(image_size)
    _check_target(preset_dir, overwrite)
    read = from_checkpoint(checkpoint, expect=expect)
    classifier = classifier_from_application(
        read.model, read.architecture, read.arguments, read.normalization, image_size
    )
    save_preset(classifier, preset_dir, overwrite=overwrite)
    return classifier


def classifier_from_application(
    model, architecture, arguments=None, normalization="default", image_size=None
):
    """The keras-hub classifier (`IGCImageClassifier` or
    `MSGCImageClassifier`) of an application model, with its weights.

    Args:
        model: a `keras_igc.applications` model with its classifier
            (`include_top=True`), e.g. one a checkpoint or `keras-igc train`
            gave.
        architecture, arguments: the registered name and builder arguments
            that built `model` (its `classes` aside).
        normalization: the input normalisation its weights expect (a
            `keras_igc.statistics.NORMALIZATIONS` name); "default" is the
            family's (IGC release or torchvision).
        image_size: `(height, width)` the preprocessor resizes to, or None.
    """
    msgc = registry.msgc_host(architecture) is not None
    backbone_cls = MSGCBackbone if msgc else IGCBackbone
    classifier_cls = MSGCImageClassifier if msgc else IGCImageClassifier
    converter_cls = MSGCImageConverter if msgc else IGCImageConverter
    if image_size is not None:
        image_size = check_image_size(image_size)
    preprocessor_cls = classifier_cls.preprocessor_cls
    head = model.get_layer("predictions")
    backbone = backbone_cls(architecture, **(arguments or {}))
    _copy_layer_weights(model, backbone)
    classifier = classifier_cls(
        backbone,
        num_classes=head.units,
        preprocessor=preprocessor_cls(
            converter_cls(image_size=image_size, normalization=normalization)
        ),
    )
    classifier.get_layer("predictions").set_weights(head.get_weights())
    return classifier


def save_preset(task, preset_dir, overwrite=False):
    """`task.save_to_preset(preset_dir)`, written under a temporary name and
    renamed into place: a reader never sees half a preset."""
    preset_dir = os.fspath(preset_dir)
    _check_target(preset_dir, overwrite)
    partial = f"{preset_dir}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    task.save_to_preset(partial)
    if os.path.exists(preset_dir):
        previous = f"{preset_dir}.previous"
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(preset_dir, previous)
        os.replace(partial, preset_dir)
        shutil.rmtree(previous)
    else:
        os.replace(partial, preset_dir)


def _check_target(preset_dir, overwrite):
    if os.path.exists(preset_dir) and not overwrite:
        raise FileExistsError(
            f"{os.fspath(preset_dir)!r} exists; pass overwrite=True (--overwrite) "
            f"to replace it."
        )


def _copy_layer_weights(source, target):
    """Each weighted layer of `target` takes the same-named layer's weights of
    `source` (the same network, with or without its head)."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
