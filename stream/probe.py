"""``tokdyn probe URL``: does this camera or file work? Codec, resolution, frame rate, time to first frame,
and a contact sheet PNG of a few sampled frames.

Library use: ``probe(url) -> ProbeReport``. CLI use: ``add_arguments(parser)`` + ``run(args)`` (what
``tokdyn probe`` wires in), or ``python -m stream.probe URL``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from stream.config import BufferPolicy, SourceConfig, redact_url
from stream.frames import Frame
from stream.sampling import Sampler
from stream.sources import SourceError, open_source

THUMB_WIDTH = 320
SHEET_COLUMNS = 3


@dataclass(frozen=True)
class ProbeReport:
    """What a probe found. ``ok`` is True when at least one frame decoded; ``error`` says why not.
    Times in seconds; ``url`` is redacted."""

    url: str
    ok: bool
    codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    live: bool
    time_to_first_frame_s: float | None
    frames_decoded: int
    sampled_timestamps: list[float]
    reconnects: int
    contact_sheet: str | None
    error: str | None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """Human-readable lines."""
        if not self.ok:
            return f"{self.url}: NOT OK: {self.error}"
        fps = f"{self.fps:.3g} fps" if self.fps else "unknown fps"
        lines = [f"{self.url}: OK ({'live' if self.live else 'file'})",
                 f"  video: {self.codec}, {self.width}x{self.height}, {fps}",
                 f"  first frame after {self.time_to_first_frame_s:.3f} s; {self.frames_decoded} frames decoded",
                 f"  sampled at: {', '.join(f'{t:.2f}' for t in self.sampled_timestamps)} s"]
        if self.reconnects:
            lines.append(f"  reconnects while probing: {self.reconnects}")
        if self.contact_sheet:
            lines.append(f"  contact sheet: {self.contact_sheet}")
        if self.error:
            lines.append(f"  warning: {self.error}")
        return "\n".join(lines)


def contact_sheet(frames: list[Frame], path: str | Path, columns: int = SHEET_COLUMNS) -> Path:
    """Save a grid of thumbnails (``THUMB_WIDTH`` wide, media time written on each) as a PNG."""
    if not frames:
        raise ValueError("contact_sheet: expected at least one frame, got none")
    h, w = frames[0].image.shape[:2]
    tw, th = THUMB_WIDTH, max(1, round(THUMB_WIDTH * h / w))
    rows = math.ceil(len(frames) / columns)
    sheet = Image.new("RGB", (columns * tw, rows * th), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for i, frame in enumerate(frames):
        x, y = (i % columns) * tw, (i // columns) * th
        sheet.paste(Image.fromarray(frame.image).resize((tw, th), Image.BILINEAR), (x, y))
        draw.text((x + 4, y + 4), f"{frame.pts:.2f} s", fill=(255, 255, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path


def probe(url: str, samples: int = 6, seconds: float = 5.0, timeout_s: float = 20.0,
          sheet_path: str | Path | None = None, config: SourceConfig | None = None) -> ProbeReport:
    """Open ``url``, decode up to ``seconds`` of media time (or ``timeout_s`` of wall time, whichever comes
    first), keep ``samples`` frames spread over it, and optionally save them as a contact sheet.

    Never raises for a broken source: the report says what went wrong (``ok`` False, ``error``).
    """
    if samples < 1 or not seconds > 0 or not timeout_s > 0:
        raise ValueError(f"probe: expected samples >= 1, seconds > 0, timeout_s > 0; got {samples}, {seconds}, "
                         f"{timeout_s}")
    base = config or SourceConfig()
    source = open_source(url, SourceConfig(**{**asdict(base), "policy": BufferPolicy.WAIT, "realtime": False,
                                              "loop": False}))
    watchdog = threading.Timer(timeout_s, source.close)  # a stalled camera cannot hold the probe forever
    watchdog.daemon = True
    source.set_sampler(Sampler(samples / seconds).keep)
    kept: list[Frame] = []
    first_s, start, error = None, time.monotonic(), None
    watchdog.start()
    try:
        for frame in source:
            if first_s is None:
                first_s = time.monotonic() - start
                t0 = frame.pts
            if frame.pts - t0 >= seconds or len(kept) >= samples:
                break
            kept.append(frame)
    except SourceError as exc:
        error = str(exc)
    finally:
        watchdog.cancel()
        source.close()
    status = source.status()
    if first_s is None and error is None:
        error = status.last_error or f"no frame within {timeout_s:g} s"
    sheet = str(contact_sheet(kept, sheet_path)) if kept and sheet_path else None
    return ProbeReport(url=redact_url(url), ok=first_s is not None, codec=status.codec, width=status.width,
                       height=status.height, fps=status.fps, live=source.live, time_to_first_frame_s=first_s,
                       frames_decoded=status.decoded, sampled_timestamps=[round(f.pts, 6) for f in kept],
                       reconnects=status.reconnects, contact_sheet=sheet, error=error)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``tokdyn probe``."""
    parser.add_argument("url", help="file path, rtsp:// / http(s):// URL, or synthetic://?width=..")
    parser.add_argument("--samples", type=int, default=6, help="frames on the contact sheet (default 6)")
    parser.add_argument("--seconds", type=float, default=5.0, help="media seconds to read (default 5)")
    parser.add_argument("--timeout", type=float, default=20.0, help="give up after this many wall seconds")
    parser.add_argument("--sheet", default="probe.png", help="contact sheet PNG path ('' for none)")
    parser.add_argument("--transport", choices=("tcp", "udp"), default="tcp", help="RTSP transport")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    """Run a probe from parsed arguments, print the report; exit code 0 if the source works, else 1."""
    report = probe(args.url, samples=args.samples, seconds=args.seconds, timeout_s=args.timeout,
                   sheet_path=args.sheet or None, config=SourceConfig(transport=args.transport))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokdyn probe", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
