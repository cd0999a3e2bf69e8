"""Class names as the data and the models spell them, and how people read them."""

CLASS_NAMES: tuple[str, ...] = ("NORMAL", "BACTERIAL_PNEUMONIA", "VIRAL_PNEUMONIA", "COVID19")

DISPLAY_NAMES: dict[str, str] = {
    "NORMAL": "Normal",
    "BACTERIAL_PNEUMONIA": "Bacterial pneumonia",
    "VIRAL_PNEUMONIA": "Viral pneumonia",
    "COVID19": "COVID-19",
}


def display_name(class_name: str) -> str:
    """The label a radiologist sees; unknown names pass through unchanged."""
    return DISPLAY_NAMES.get(class_name, class_name.replace("_", " ").capitalize())
