"""Write a video with the running predictions drawn on every frame (PyAV + Pillow)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from functools import cache
from pathlib import Path
from types import TracebackType

import av
from PIL import Image, ImageDraw, ImageFont

# Output frames are scaled down to at most this many pixels on the long side.
MAX_SIDE = 1280
_TIME_BASE = Fraction(1, 1000)  # output timestamps in milliseconds


def draw_predictions(image: Image.Image, lines: Sequence[tuple[str, float]]) -> Image.Image:
    """Draw ``(label, probability)`` lines in a translucent box at the top left of
    ``image`` (RGB, modified in place), each with a bar as long as its probability."""
    if not lines:
        return image
    size = max(10, image.height // 22)
    font = _font(size)
    draw = ImageDraw.Draw(image, "RGBA")
    texts = [f"{p * 100:5.1f}%  {label}" for label, p in lines]
    width = min(image.width, max(int(draw.textlength(t, font=font)) for t in texts) + size)
    line_height = int(size * 1.4)
    pad = size // 3
    draw.rectangle((0, 0, width + 2 * pad, len(lines) * line_height + 2 * pad),
                   fill=(0, 0, 0, 150))
    for row, (text, (_, probability)) in enumerate(zip(texts, lines, strict=True)):
        top = pad + row * line_height
        draw.rectangle((pad, top + line_height - 3, pad + int(width * probability),
                        top + line_height - 1), fill=(80, 200, 120, 230))
        draw.text((pad, top), text, font=font, fill=(255, 255, 255, 255))
    return image


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


class OverlayWriter:
    """Encodes source frames with predictions drawn on them (H.264 when available).

    The output keeps the source's frame times and size (scaled down to ``max_side`` on
    the long side, even dimensions); the container follows ``path``'s suffix. Opened on
    the first frame; use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | Path, *, max_side: int = MAX_SIDE) -> None:
        self.path = Path(path)
        self.max_side = max_side
        self.frames = 0
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._last_pts = -1

    def write(self, frame: av.VideoFrame, time: float,
              lines: Sequence[tuple[str, float]]) -> None:
        """Encode ``frame`` (shown from ``time`` seconds) with ``(label, probability)``
        lines drawn on it."""
        if self._stream is None:
            self._open(frame.width, frame.height)
        stream = self._stream
        image = frame.reformat(width=stream.width, height=stream.height,
                               format="rgb24").to_image()
        out = av.VideoFrame.from_image(draw_predictions(image, lines))
        self._last_pts = max(round(time / _TIME_BASE), self._last_pts + 1)
        out.pts, out.time_base = self._last_pts, _TIME_BASE
        self._container.mux(stream.encode(out))
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        scale = min(1.0, self.max_side / max(width, height))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), "w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = self._container.add_stream(codec, rate=30)  # nominal: frames keep their times
        stream.width = max(2, int(width * scale) // 2 * 2)
        stream.height = max(2, int(height * scale) // 2 * 2)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = _TIME_BASE
        if codec == "libx264":
            stream.options = {"preset": "veryfast"}
        self._stream = stream

    def close(self) -> None:
        """Flush the encoder and finish the file (nothing to do if no frame came)."""
        if self._container is not None:
            self._container.mux(self._stream.encode())
            self._container.close()
            self._container = None

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
