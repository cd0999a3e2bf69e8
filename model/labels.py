"""Class names as the data and the models spell them, and how people read them.

The one place they are spelled: everything else imports these names.
"""

NORMAL = "NORMAL"
BACTERIAL = "BACTERIAL_PNEUMONIA"
VIRAL = "VIRAL_PNEUMONIA"
COVID = "COVID19"

CLASS_NAMES: tuple[str, ...] = (NORMAL, BACTERIAL, VIRAL, COVID)

DISPLAY_NAMES: dict[str, str] = {
    NORMAL: "Normal",
    BACTERIAL: "Bacterial pneumonia",
    VIRAL: "Viral pneumonia",
    COVID: "COVID-19",
}


def display_name(class_name: str) -> str:
    """The label a radiologist sees; unknown names pass through unchanged."""
    return DISPLAY_NAMES.get(class_name, class_name.replace("_", " ").capitalize())
