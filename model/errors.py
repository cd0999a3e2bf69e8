"""The one exception type users see: its message is written for a person, not a log."""


class ImageError(ValueError):
    """An input that cannot be analysed; ``str(error)`` is the message to show."""
