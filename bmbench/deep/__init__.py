"""Building blocks of the deep families (``cnn``, ``transfer``, ``hybrid``).

``augment`` (on-the-fly transforms), ``pipeline`` (decoded-image cache and ``tf.data``),
``devices`` (GPU/CPU selection, mixed precision, multi-device strategy, seeds) and
``training`` (Keras fit with early stopping and the history CSV). TensorFlow is imported
inside functions only, so loading recipes and the CLI stay fast.
"""
