"""Supplied text escaped for Markdown keeps no link syntax and no autolink trigger."""

from webapp.plain_text import WORD_JOINER, plain


def test_link_image_and_autolink_syntax_is_broken_but_the_characters_stay():
    hostile = "[x](http://h/p) ![t](http://h/t.png) www.h.example a@b.example :red[x] **b**"
    escaped = plain(hostile)
    for trigger in ("](", "![", "http://", "www.", "@b", ":red[", "**"):
        assert trigger not in escaped
    decoded = escaped.replace(WORD_JOINER, "")
    for number in range(33, 127):
        decoded = decoded.replace(f"&#{number};", chr(number))
    assert decoded == hostile


def test_ordinary_text_is_left_as_it_is():
    for text in ("Wrong username or password.", "Added radiologist newbie.",
                 "scan (1)_final.png is not an image: its header is damaged."):
        assert plain(text) == text
