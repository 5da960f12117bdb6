"""Open a stream source with PyAV: a video file, a capture device (``/dev/video0``
through v4l2) or a network URL (RTSP, HTTP(S), ...)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import av

from ..data.video import VideoError, VideoReader

DEVICE_PREFIX = "/dev/video"


class SourceError(VideoError):
    """A stream source that cannot be used; the message names the source."""


class SourceOpenError(SourceError):
    """The source cannot be opened, or gave no frame at all."""


class SourceDroppedError(SourceError):
    """The source failed after some frames were decoded (decode error, connection lost)."""


def is_url(source: str) -> bool:
    """``scheme://...`` (rtsp, http, https, udp, ...), as opposed to a path."""
    return "://" in source


def display_name(source: str) -> str:
    """``source`` with any URL password hidden, for messages."""
    if not is_url(source):
        return source
    parts = urlsplit(source)
    if parts.password is None:
        return source
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


@contextmanager
def open_source(source: str, *, input_format: str | None = None,
                timeout: float = 10.0) -> Iterator[VideoReader]:
    """A :class:`VideoReader` over ``source``'s first video stream (times in seconds from
    the stream start). ``input_format`` forces a PyAV/FFmpeg input format (default: v4l2
    for ``/dev/video*``, else probed); ``timeout``: seconds a network source may stay
    silent. Raises :class:`SourceOpenError` naming the source and the reason."""
    shown = display_name(source)
    if input_format is None and not is_url(source) and not source.startswith(DEVICE_PREFIX):
        path = Path(source)
        if not path.is_file():
            raise SourceOpenError(shown, "cannot open: file not found")
        if path.stat().st_size == 0:
            raise SourceOpenError(shown, "cannot open: empty file (0 bytes)")
    if input_format is None and source.startswith(DEVICE_PREFIX):
        input_format = "v4l2"
    options = {"rtsp_transport": "tcp"} if source.startswith("rtsp") else {}
    try:
        container = av.open(source, format=input_format, options=options,
                            timeout=(timeout, timeout) if is_url(source) else None)
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise SourceOpenError(shown, f"cannot open: {redact(str(err), source)}") from err
    with container:
        if not container.streams.video:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise SourceOpenError(shown, f"no video stream (streams: {kinds})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            reader = VideoReader(shown, container, stream)
        except VideoError as err:
            raise SourceOpenError(shown, err.problem) from err
        yield reader


def redact(text: str, source: str) -> str:
    """``text`` (e.g. an FFmpeg error naming the URL) with ``source``'s password hidden."""
    return text.replace(source, display_name(source))
