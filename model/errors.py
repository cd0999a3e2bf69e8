"""The exceptions whose messages are written for a person, not a log: an image that cannot be
analysed, a model that cannot be loaded (kept here, apart from TensorFlow, for pages that only
name it)."""


class ImageError(ValueError):
    """An input that cannot be analysed; ``str(error)`` is the message to show."""


class ModelLoadError(RuntimeError):
    """A run directory that cannot be used; the message says what is missing and where."""
