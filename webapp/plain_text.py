"""Text a user, a file or the PACS supplied, shown as text: never as Markdown.

Streamlit renders Markdown in messages, captions and toasts, so a file named
``[x](http://host/p) ![t](http://host/t.png).png`` would become a live link and a tracking
pixel. Every supplied string passes through ``plain`` before it reaches such an element. A
string holding anything Markdown could act on has each ASCII punctuation character turned
into a numeric character reference (``&#58;``), which Markdown shows as the character itself.
That is not enough on its own: Streamlit finds
GitHub-style autolinks (``http://...``, ``www.``, e-mail addresses) in the text after the
references are decoded, so an invisible WORD JOINER (U+2060) follows every ``:``, ``.`` and
``@``, which none of those patterns allows.
"""

from __future__ import annotations

import re

WORD_JOINER = "\u2060"
_PUNCTUATION = re.compile(r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]""")
_LINK_BREAKERS = frozenset(":.@")


def _reference(match: re.Match) -> str:
    character = match.group()
    joiner = WORD_JOINER if character in _LINK_BREAKERS else ""
    return f"&#{ord(character)};{joiner}"


# What can start a link or image, an autolink, HTML, emphasis, code, LaTeX, a directive
# (:red[...], :material/...:), an emoji shortcode, an entity or a block (list, heading,
# quote). Text without any is left as it is, so ordinary messages ("Wrong username or
# password.", "scan (1)_a.png is ...") read the same in the page's source.
_ACTIVE = re.compile(r"""[\[\]<>*`~\\$@]|:\S|www\.|&[#\w]|^\s*([-+=>#]|\d+[.)])""",
                     re.IGNORECASE | re.MULTILINE)


def plain(text: object) -> str:
    """``text`` as Markdown that renders as the characters it holds (and never as a link)."""
    text = str(text)
    if not _ACTIVE.search(text):
        return text
    return _PUNCTUATION.sub(_reference, text).replace("\n", "  \n")
