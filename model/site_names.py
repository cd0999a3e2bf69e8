"""A site's name and the version of the model adapted to it (``<base>+site-<name>``), bounded
where they are stored: the name is a folder and part of the version, and the version names the
model in every audit row (``model.run_dir.MAX_VERSION_CHARS``). Too long is refused with a
message, never cut silently: two sites must not end up with one name."""

from __future__ import annotations

import re

from model.run_dir import MAX_VERSION_CHARS

SITE_MARK = "+site-"
MAX_SITE_NAME_CHARS = 40


class SiteNameError(ValueError):
    """A site name that cannot be used; the message is for a person."""


def site_name(text: str) -> str:
    """The site's name as a version and a folder carry it: letters, digits, - and _ (anything
    else becomes -)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", text.strip()).strip("-")
    if not name:
        raise SiteNameError("Name the site (letters, digits, - and _), e.g. st-mary.")
    if len(name) > MAX_SITE_NAME_CHARS:
        raise SiteNameError(f"A site name has at most {MAX_SITE_NAME_CHARS} characters; "
                            f"{name[:MAX_SITE_NAME_CHARS]}… has {len(name)}. Choose a shorter "
                            "one.")
    return name


def adapted_version(base_version: str, name: str) -> str:
    """The adapted model's version; SiteNameError when it would not fit the audit trail."""
    version = f"{base_version}{SITE_MARK}{name}"
    if len(version) > MAX_VERSION_CHARS:
        room = MAX_VERSION_CHARS - len(base_version) - len(SITE_MARK)
        hint = (f"choose a site name of at most {room} characters" if room > 0 else
                "adapt a model that was adapted fewer times (the shipped one, say)")
        raise SiteNameError(f"The adapted model's version ({base_version}{SITE_MARK}{name}) "
                            f"would have {len(version)} characters; at most "
                            f"{MAX_VERSION_CHARS} fit the audit trail: {hint}.")
    return version
