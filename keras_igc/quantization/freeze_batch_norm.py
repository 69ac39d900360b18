import keras

from keras_igc.validation import positive_int


class FreezeBatchNorm(keras.callbacks.Callback):
    """Freezes a quantization-aware model's BatchNorm statistics from an epoch on.

    The late step of the standard QAT recipe: once the ranges have settled,
    training uses the moving statistics, so the last epochs train exactly
    the folded kernels the int8 files hold. The switch is a variable of each
    `QuantizeAwareConvolution` (`batch_norm_frozen`), saved with the
    weights, so a resumed run stays frozen.

    Args:
        epoch: the first epoch (counted from 0) trained frozen.

    Example:

    >>> import keras_igc.quantization as q
    >>> q.FreezeBatchNorm(epoch=2).epoch
    2
    """

    def __init__(self, epoch):
        super().__init__()
        if epoch != 0:
            positive_int(epoch, "epoch", "FreezeBatchNorm")
        self.epoch = int(epoch)

    def on_epoch_begin(self, epoch, logs=None):
        if epoch >= self.epoch:
            from keras_igc.quantization.conversion import freeze_batch_norm_statistics

            freeze_batch_norm_statistics(self.model)
