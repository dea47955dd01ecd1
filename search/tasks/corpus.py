"""The text the ``lm`` task models: the default corpus or a user's file, read once and
read again only when the file changes."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Final

from einspace.errors import EinspaceError

__all__ = ["LM_CORPUS", "corpus_bytes"]

LM_CORPUS: Final = "pydoc_data.topics"
"""The default corpus: the standard library's documentation topics, joined in key order."""


def corpus_bytes(path: str | None) -> bytes:
    """The corpus as bytes: the documentation topics, or the file at ``path`` (read again
    when the file's size or modification time changes).

    Examples:
        >>> corpus_bytes(None) is corpus_bytes(None), len(corpus_bytes(None)) > 100_000
        (True, True)
    """
    return _read_corpus(path, _file_stamp(path))


def _file_stamp(path: str | None) -> tuple[int, int] | None:
    try:
        info = Path(path).stat() if path is not None else None
    except OSError:
        return None
    return None if info is None else (info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=4)
def _read_corpus(path: str | None, stamp: tuple[int, int] | None) -> bytes:
    if path is None:
        from pydoc_data.topics import topics

        return "\n\n".join(topics[key] for key in sorted(topics)).encode("utf-8")
    file = Path(path)
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "does not exist"
        raise EinspaceError(f"text file {path!r} {what}; expected a readable text file")
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise EinspaceError(f"cannot read text file {path!r}: {err.strerror}") from None
    if not raw:
        raise EinspaceError(f"text file {path!r} is empty; expected some text to model")
    return raw
