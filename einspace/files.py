"""File-system paths as the user gave them: folders created on demand, and OS errors turned
into :class:`~einspace.errors.EinspaceError` messages that name the path.

Examples:
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     ensure_folder(pathlib.Path(tmp) / "a" / "b", "--out").is_dir()
    True
    >>> try:
    ...     ensure_folder("/proc/einspace-cannot-be-here", "--out")
    ... except EinspaceError as err:
    ...     print(str(err).split(";")[0])
    --out '/proc/einspace-cannot-be-here': cannot create the folder (No such file or directory)
"""

from __future__ import annotations

import os
from pathlib import Path

from einspace.errors import EinspaceError

__all__ = ["ensure_folder", "ensure_parent", "path_error"]


def path_error(err: OSError, flag: str | None = None) -> EinspaceError:
    """An OS error as one line naming the path (and the option that gave it, when known)."""
    where = f"{flag} {err.filename!r}" if flag else repr(err.filename)
    reason = err.strerror or type(err).__name__
    return EinspaceError(
        f"{where}: {reason}; choose a path you can write, e.g. a folder under your home"
        if err.filename is not None
        else f"{reason}: {err}"
    )


def ensure_folder(path: str | os.PathLike[str], flag: str, example: str = "./out") -> Path:
    """``path`` as a folder that exists and is writable, created with its parents if need be;
    otherwise an EinspaceError naming ``flag`` and the path (``example``: a value to suggest)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise EinspaceError(f"{flag} {str(folder)!r} is a file; expected a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EinspaceError(
            f"{flag} {str(folder)!r}: cannot create the folder ({err.strerror}); choose a "
            f"folder you can write, e.g. {flag} {example}"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EinspaceError(f"{flag} {str(folder)!r} is not writable; choose another folder")
    return folder


def ensure_parent(path: str | os.PathLike[str], flag: str) -> Path | None:
    """The folder that will hold the file ``path`` (a SQLite store, a report), as
    :func:`ensure_folder`; a URL other than ``sqlite:///…`` is left to its driver.

    Examples:
        >>> ensure_parent("postgresql://host/db", "--store") is None
        True
    """
    text = os.fspath(path)
    if "://" in text:
        if not text.startswith("sqlite:///") or text == "sqlite:///:memory:":
            return None
        text = text.removeprefix("sqlite:///")
    return ensure_folder(Path(text).parent, flag, example=f"./{Path(text).name}")
