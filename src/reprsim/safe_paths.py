"""Which paths and names reprsim may write: a file name component never holds a separator, ``..``
or a control character (:func:`path_name_problem`), and a file or folder reprsim owns is never a
symlink or a special file (:func:`check_writable_target`, :func:`safe_folder`). Every error is one
:class:`~reprsim.errors.ReprsimError` line naming the path and the fix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from reprsim.errors import ReprsimError

__all__ = ["check_path_name", "check_writable_target", "not_regular_error", "path_name_problem", "safe_folder"]


def not_regular_error(path: Path, what: str, found: str) -> ReprsimError:
    """One line for a path where reprsim writes its own file but finds something else."""
    return ReprsimError(
        f"refusing to write the {what} {path}: it is {found}, not a file reprsim made; "
        "remove it (or choose another folder) and rerun"
    )


def check_writable_target(path: str | Path, what: str = "file") -> None:
    """Raise ReprsimError when ``path`` exists as a symlink or anything but a regular file.

    Writers call this before publishing ``path``: replacing a planted symlink would be harmless
    (a rename replaces the link), but a symlink where reprsim's own file should be means the folder
    is not what the user thinks it is, so it is an error naming it.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ReprsimError(f"cannot write {path}: {exc.strerror or exc}; check the path and its permissions") from None
    if stat.S_ISLNK(st.st_mode):
        raise not_regular_error(path, what, "a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        raise not_regular_error(path, what, "not a regular file")


def safe_folder(folder: str | Path, what: str = "folder") -> Path:
    """Create ``folder`` (one level, its parent must exist or is created) and return it; a symlink or
    a non-folder there is a ReprsimError naming it (for folders reprsim owns, e.g. ``figures/``)."""
    folder = Path(folder)
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReprsimError(
                f"cannot create the folder {folder}: {exc.strerror or exc}; check the path and its "
                "permissions (e.g. another --out)"
            ) from None
        return folder
    if stat.S_ISLNK(st.st_mode):
        raise not_regular_error(folder, what, "a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise not_regular_error(folder, what, "not a folder")
    return folder


def path_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be one component of a file name (None when it can).

    Refused: a non-string or empty name, ``.`` / ``..``, a path separator (``/``, ``\\``), a NUL or
    any other control character (they hide in listings and terminals).
    """
    if not isinstance(name, str) or not name:
        return "it is empty or not text"
    if name in (".", ".."):
        return f"{name!r} names a folder, not a file"
    if "/" in name or "\\" in name or (os.altsep and os.altsep in name):
        return "it contains a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it contains a control character"
    return None


def check_path_name(name: object, what: str) -> str:
    """``name`` when it can be one file-name component (see :func:`path_name_problem`), else a
    ReprsimError naming ``what``, the value and the fix."""
    problem = path_name_problem(name)
    if problem is not None:
        raise ReprsimError(
            f"{what} {name!r} becomes part of a file name but {problem}; use letters, digits, "
            "'-', '_' and '.' (e.g. resnet18-a)"
        )
    return name  # type: ignore[return-value]
