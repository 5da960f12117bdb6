"""Download files into a local cache with resume, retries and sha256 verification (urllib only)."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from tqdm import tqdm

_CHUNK = 1 << 16
_BACKOFF_S = 0.5


class DownloadError(OSError):
    """A download failed, or its content does not match the expected sha256."""


class _Incomplete(OSError):
    """The connection ended before the announced Content-Length was received."""


def cache_dir() -> Path:
    """``$VIDNETS_CACHE`` if set, else ``~/.cache/vidnets``."""
    env = os.environ.get("VIDNETS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vidnets"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _local_source(url: str) -> Path | None:
    """The file a ``file:`` URL or plain path names; None for network URLs."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if len(parsed.scheme) <= 1:  # no scheme, or a Windows drive letter
        return Path(url)
    return None


def _target(url: str, dest: str | os.PathLike | None) -> Path:
    name = PurePosixPath(unquote(urlparse(url).path)).name
    if not name:
        name = hashlib.sha256(url.encode()).hexdigest()[:16]
    if dest is None:
        return cache_dir() / name
    dest = Path(dest)
    return dest / name if dest.is_dir() else dest


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One HTTP(S) attempt: continue ``part`` with a Range request if possible, else restart."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
        if r.status != 206:
            have = 0  # no Range support: the server sent the whole file
        elif not re.match(rf"bytes {have}-", r.headers.get("Content-Range", "")):
            part.unlink()
            raise _Incomplete(f"bad Content-Range {r.headers.get('Content-Range')!r}")
        length = r.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        bar = tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress, file=sys.stderr,
        )  # fmt: skip
        with bar, open(part, "ab" if have else "wb") as out:
            while chunk := r.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Incomplete(f"connection closed after {size} of {total} bytes")


def _fetch_with_retries(url: str, part: Path, retries: int, timeout: float, progress: bool) -> None:
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, timeout, progress)
            return
        except urllib.error.HTTPError as err:
            if err.code == 416:  # our partial file does not fit the server's file
                part.unlink(missing_ok=True)
            elif err.code < 500:
                raise DownloadError(f"{url}: HTTP error {err.code} {err.reason}") from None
            failure = err
        except (OSError, http.client.HTTPException) as err:
            failure = err
        if attempt < retries:
            time.sleep(_BACKOFF_S * 2**attempt)
    raise DownloadError(f"{url}: download failed after {retries + 1} attempts: {failure}")


def download(
    url: str,
    dest: str | os.PathLike | None = None,
    sha256: str | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 30,
) -> Path:
    """Download ``url`` (http(s), ``file:`` URL or local path) and return the local file.

    ``dest`` is the target file, or a directory to put it in (default: :func:`cache_dir`),
    named after the last URL path component.  The data is streamed into ``<file>.part``
    (resumed with an HTTP Range request after a broken connection when the server allows),
    checked against ``sha256`` if given, then renamed into place.  An existing file that
    verifies is returned without touching the network.
    """
    final = _target(url, dest)
    if final.is_file() and (sha256 is None or sha256_of(final) == sha256.lower()):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    source = _local_source(url)
    if source is None:
        _fetch_with_retries(url, part, retries, timeout, progress)
    elif source.is_file():
        shutil.copyfile(source, part)
    else:
        raise DownloadError(f"{url}: no such file {source}")
    if sha256 is not None:
        actual = sha256_of(part)
        if actual != sha256.lower():
            part.unlink()
            raise DownloadError(f"{url}: sha256 mismatch: expected {sha256.lower()}, got {actual}")
    os.replace(part, final)
    return final
