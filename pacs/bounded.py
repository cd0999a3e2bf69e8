"""Answers from the archive read within a byte limit, so one huge or endless image cannot
exhaust the server's memory (the same discipline as an uploaded .zip).

A response hook runs before requests reads the body: it refuses a declared Content-Length
over the limit at once, and wraps the body so that a chunked answer is counted as it arrives.
"""

from __future__ import annotations

import requests

from pacs.errors import PacsError


class AnswerTooLarge(PacsError):
    """The archive's answer passed the byte limit; the message names it."""


class _CountedBody:
    """urllib3's response body, counted while it streams; everything else passes through."""

    def __init__(self, raw, limit: int) -> None:
        self._raw, self._limit, self._read = raw, limit, 0

    def stream(self, amount=None, decode_content=None):
        for chunk in self._raw.stream(amount, decode_content=decode_content):
            self._read += len(chunk)
            if self._read > self._limit:
                self._raw.close()
                raise AnswerTooLarge(_message(self._limit))
            yield chunk

    def __getattr__(self, name: str):
        return getattr(self._raw, name)


def _message(limit: int) -> str:
    return (f"The PACS sent an answer larger than {limit / 1e6:.0f} MB, the limit per image "
            "(CXR_PACS_MAX_ANSWER_BYTES); it was not read.")


def limit_answers(session: requests.Session, limit: int) -> None:
    """Every answer of ``session`` from now on is refused beyond ``limit`` bytes."""

    def bounded(response: requests.Response, *_args, **_kwargs) -> requests.Response:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise AnswerTooLarge(_message(limit))
        response.raw = _CountedBody(response.raw, limit)
        return response

    session.hooks["response"].append(bounded)
