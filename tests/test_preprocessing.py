"""The preprocessing record: what `train` writes, `export` copies and
`predict` reads (the whole path: user_path.py)."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_igc import data, predict, preprocessing

pytestmark = pytest.mark.tensorflow_only


def test_a_datasets_record_prepares_images_as_its_pipeline_does(tmp_path):
    record = preprocessing.for_dataset("digits")
    images, _ = next(iter(data._digits("eval").batch(3)))
    expected = next(iter(data.load("digits", "eval", batch_size=3)))[0].numpy()
    for i, image in enumerate(images.numpy()):
        Image.fromarray(np.repeat(image, 3, -1)).save(tmp_path / f"{i}.png")
        got = record.load_image(str(tmp_path / f"{i}.png"))  # RGB to grayscale
        np.testing.assert_allclose(got, expected[i], atol=1e-6)
        # A pathlib.Path, as `predict.classify` users pass, reads the same.
        np.testing.assert_array_equal(record.load_image(tmp_path / f"{i}.png"), got)


def test_a_record_saves_loads_and_is_found_beside_a_model(tmp_path):
    record = preprocessing.for_dataset("imagenet2012", "msgc")
    assert record.view == "centre_crop" and len(record.class_names) == 1000
    record.save(tmp_path)
    assert preprocessing.read(tmp_path / "model.onnx") == record
    assert preprocessing.read(tmp_path / "elsewhere" / "model.onnx") is None


@pytest.mark.parametrize(
    "text, message",
    [("not json", "not a preprocessing record"),
     (json.dumps({"image_size": [32, 32]}), "KeyError"),
     (json.dumps({"image_size": [8, 8], "channels": 2, "mean": [0, 0],
                  "std": [1, 1]}), "1 or 3 channels")],
)  # fmt: skip
def test_a_damaged_record_is_named_with_the_fix(tmp_path, text, message):
    (tmp_path / preprocessing.RECORD_FILE).write_text(text)
    with pytest.raises(ValueError, match=message):
        preprocessing.read(tmp_path / "model.keras")


def test_a_record_of_another_model_is_refused(tmp_path):
    preprocessing.for_dataset("digits").save(tmp_path)
    with pytest.raises(ValueError, match="belongs to another model.*--preprocess"):
        predict.record_for(tmp_path / "model.tflite", (224, 224, 3), 1000)
    # --preprocess names a normalisation instead of the record.
    chosen = predict.record_for(tmp_path / "m.tflite", (224, 224, 3), 1000, "torch")
    assert chosen.view == "centre_crop" and chosen.class_names[0] == "tench"


@pytest.mark.parametrize(
    "name, message",
    [("missing.keras", "No model file at"), ("model.h5", "ending in .keras"),
     ("model.tflite", "could not be loaded as a .tflite model.*truncated"),
     ("model.onnx", "could not be loaded as a .onnx model.*truncated")],
)  # fmt: skip
def test_predict_names_a_file_it_cannot_read(tmp_path, name, message):
    if name != "missing.keras":
        (tmp_path / name).write_bytes(b"half a model")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        predict.load_model(str(tmp_path / name))
