"""The base of keras_igc's image converters: a named normalisation."""

import numpy as np
from keras_hub.layers import ImageConverter

from keras_igc import statistics


class NormalizedImageConverter(ImageConverter):
    """A keras-hub `ImageConverter` whose scale and offset are a named
    normalisation of `keras_igc.statistics.NORMALIZATIONS`, applied to images
    in 0-255 after the resize. Subclasses set `default_normalization`."""

    default_normalization = None

    def __init__(self, image_size=None, normalization="default", **kwargs):
        if normalization == "default":
            normalization = self.default_normalization
        if normalization is not None:
            scale, offset = statistics.scale_and_offset(normalization)
            given = {k: kwargs[k] for k in ("scale", "offset") if k in kwargs}
            expected = {"scale": scale, "offset": offset}
            for key, value in given.items():
                if value is None or not np.allclose(value, expected[key]):
                    raise ValueError(
                        f"{type(self).__name__}: {key}={value!r} contradicts "
                        f"normalization={normalization!r} ({key} "
                        f"{[round(v, 6) for v in expected[key]]}). Pass "
                        f"normalization=None to set scale and offset yourself."
                    )
            kwargs.update(expected)
        super().__init__(image_size=image_size, **kwargs)
        self.normalization = normalization

    def get_config(self):
        config = super().get_config()
        config["normalization"] = self.normalization
        return config
