"""Safe unpacking of downloaded ``.tar(.gz|.bz2|.xz)`` and ``.zip`` archives.

Every member is checked before anything is written: only regular files and directories with
relative, non-escaping names are accepted, within limits on member count and total size.  The
archive is unpacked into a hidden temporary directory next to the destination and renamed into
place, so a failed extraction leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO


class ArchiveError(ValueError):
    """An archive is unreadable, unsafe, or too large to extract."""


_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")
_EXTRACT_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile)


@dataclass(frozen=True)
class _Member:
    name: str  # as stored in the archive
    kind: str  # "file", "dir", or the unsafe kind ("symlink", "hard link", ...)
    size: int
    open: Callable[[], IO[bytes]]


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hard link"
    return "device or fifo"


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = stat.S_IFMT(info.external_attr >> 16)
    if info.is_dir():
        return "dir"
    if mode in (0, stat.S_IFREG):
        return "file"
    return "symlink" if mode == stat.S_IFLNK else "special file"


def _members(archive: Path, stack: contextlib.ExitStack) -> list[_Member]:
    """List the members of a zip or tar archive, kept open by ``stack``."""
    if not archive.is_file():
        raise ArchiveError(f"{archive}: archive not found")
    try:
        if zipfile.is_zipfile(archive):
            zf = stack.enter_context(zipfile.ZipFile(archive))
            return [
                _Member(i.filename, _zip_kind(i), i.file_size, lambda i=i: zf.open(i))
                for i in zf.infolist()
            ]
        tar = stack.enter_context(tarfile.TarFile.open(archive, "r:*"))
        return [
            _Member(m.name, _tar_kind(m), m.size, lambda m=m: tar.extractfile(m))
            for m in tar.getmembers()
        ]
    except _EXTRACT_ERRORS as err:
        raise ArchiveError(f"{archive}: not a readable tar or zip archive ({err})") from None


def _path_problem(name: str) -> str | None:
    """Why a member name is unsafe to extract, or None."""
    if "\\" in name or "\0" in name:
        return "has a backslash or NUL in its name"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "points outside the destination ('..')"
    return None


def _plan(
    archive: Path, members: list[_Member], max_total_bytes: int, max_members: int
) -> list[tuple[tuple[str, ...], _Member]]:
    """Validate every member; return (relative path parts, member) pairs to extract."""
    if len(members) > max_members:
        raise ArchiveError(f"{archive}: {len(members)} members exceed the limit of {max_members}")
    plan, total = [], 0
    for member in members:
        kind_problem = None if member.kind in ("file", "dir") else f"is a {member.kind}"
        problem = _path_problem(member.name) or kind_problem
        if problem:
            raise ArchiveError(f"{archive}: member {member.name!r} {problem}")
        total += member.size if member.kind == "file" else 0
        if total > max_total_bytes:
            raise ArchiveError(
                f"{archive}: member {member.name!r} brings the unpacked size past the "
                f"limit of {max_total_bytes} bytes"
            )
        parts = PurePosixPath(member.name).parts
        if parts:
            plan.append((parts, member))
    return plan


def _stem(archive: Path) -> str:
    name = archive.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return archive.stem


def safe_extract(
    archive_path: str | os.PathLike,
    dest_dir: str | os.PathLike,
    max_total_bytes: int = 2**31,
    max_members: int = 10_000,
) -> Path:
    """Unpack an archive into ``dest_dir`` and return the extracted root.

    The root is ``dest_dir/<top>`` when all members live under one top-level directory
    ``<top>``, else ``dest_dir/<archive name without extension>``.  It must not exist yet.
    """
    archive, dest = Path(archive_path), Path(dest_dir)
    with contextlib.ExitStack() as stack:
        plan = _plan(archive, _members(archive, stack), max_total_bytes, max_members)
        dest.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        try:
            for parts, member in plan:
                target = tmp.joinpath(*parts)
                if member.kind == "dir":
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with member.open() as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            tops = {parts[0] for parts, _ in plan}
            single = tmp / tops.pop() if len(tops) == 1 else None
            if single is not None and single.is_dir():
                source, root = single, dest / single.name
            else:
                source, root = tmp, dest / _stem(archive)
            if root.exists():
                raise ArchiveError(f"{archive}: extraction target {root} already exists")
            source.rename(root)
        except _EXTRACT_ERRORS as err:
            raise ArchiveError(f"{archive}: extraction failed: {err}") from err
    return root
