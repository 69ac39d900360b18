"""Quantization-aware training (QAT): a float model fine-tuned under the int8
rounding of its exports (`quantize_aware`), so that its int8 files keep its
accuracy where post-training quantization loses some."""

from keras_igc.quantization.activation_quantizer import ActivationQuantizer
from keras_igc.quantization.conversion import (
    check_quantizable,
    freeze_batch_norm_statistics,
    inference_model,
    is_quantize_aware,
    quantize_aware,
)
from keras_igc.quantization.freeze_batch_norm import FreezeBatchNorm
from keras_igc.quantization.quantize_aware_convolution import QuantizeAwareConvolution
from keras_igc.quantization.quantize_aware_msgc_conv2d import QuantizeAwareMSGCConv2D

__all__ = [
    "ActivationQuantizer",
    "FreezeBatchNorm",
    "QuantizeAwareConvolution",
    "QuantizeAwareMSGCConv2D",
    "check_quantizable",
    "freeze_batch_norm_statistics",
    "inference_model",
    "is_quantize_aware",
    "quantize_aware",
]
