"""The dataset's own video files for the app: checked against the store's rows, cut to a segment exactly.

Browsers (and st.video) seek and stop at whole seconds only, so a segment is served as its own short
file: the frames from its start to its end, re-encoded (H.264, no audio, at most MAX_WIDTH wide).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from taxonomy_core.schema import VIDEO_EXTENSIONS

MAX_WIDTH = 480
MAX_SECONDS = 60.0  # longer segments are cut at their first minute (and say so)
EPSILON = 1e-6


class VideoRefused(PermissionError):
    """A file the app will not serve: not a stored video of the dataset, or reached through a link leaving it."""


@dataclass(frozen=True)
class Segment:
    """One stored clip's video file and bounds, as the store lists them."""

    video: str
    start: float
    end: float


@dataclass(frozen=True)
class Cut:
    """An encoded segment: mp4 bytes, where it starts in its file, the seconds it covers, whether it was longer."""

    data: bytes
    start: float
    seconds: float
    frames: int
    truncated: bool


@dataclass(frozen=True)
class DatasetVideos:
    """What the app may play: the stored clips' segments and the folders that hold their videos."""

    segments: dict[str, Segment]  # by clip id
    roots: frozenset[Path]

    @classmethod
    def of(cls, segments: dict[str, Segment]) -> DatasetVideos:
        """The roots are the stored videos' folders, links resolved: nothing is served outside them."""
        return cls(segments, frozenset(Path(s.video).parent.resolve() for s in segments.values()))

    def path(self, clip_id: str) -> tuple[Path, Segment]:
        """The real path and bounds of a stored clip's video; refused for anything else."""
        segment = self.segments.get(clip_id)
        if segment is None:
            raise VideoRefused(f"clip {clip_id} is not a stored clip of this dataset")
        return servable_path(segment.video, self.roots), segment


def servable_path(video: str, roots: frozenset[Path]) -> Path:
    """The real path of a stored video, if it is a video file inside the dataset's folders."""
    path = Path(video)
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise VideoRefused(f"{video} is not a video file ({', '.join(VIDEO_EXTENSIONS)})")
    real = path.resolve()
    if not any(real.is_relative_to(root) for root in roots):
        raise VideoRefused(f"{video} leads outside the dataset's video folders (to {real})")
    if not real.is_file():
        raise FileNotFoundError(f"missing video file: {video}")
    return real


def cut_segment(path: Path, start: float, end: float, max_width: int = MAX_WIDTH) -> Cut:
    """The frames of [start, end) as an mp4 that plays from 0 to exactly its length (a whole frame count)."""
    import av

    stop = min(end, start + MAX_SECONDS)
    with av.open(str(path)) as source, tempfile.NamedTemporaryFile(suffix=".mp4") as target:
        stream = source.streams.video[0]
        rate = stream.average_rate or Fraction(25)
        if start > 0 and stream.time_base:
            source.seek(int(start / stream.time_base), stream=stream, backward=True)
        frames = 0
        with av.open(target.name, "w", format="mp4", options={"movflags": "+faststart"}) as out:
            encoder = None
            for frame in source.decode(stream):
                time = frame.time
                if time is None or time < start - EPSILON:
                    continue
                if time >= stop - EPSILON:
                    break
                if encoder is None:
                    encoder = _encoder(out, rate, frame.width, frame.height, max_width)
                picture = frame.reformat(width=encoder.width, height=encoder.height, format="yuv420p")
                picture.pts, picture.time_base = frames, Fraction(1) / rate
                out.mux(encoder.encode(picture))
                frames += 1
            if encoder is not None:
                out.mux(encoder.encode(None))
        data = Path(target.name).read_bytes()
    if not frames:
        raise ValueError(f"{path} has no frames between {start:.2f}s and {end:.2f}s")
    return Cut(data, start, float(frames / rate), frames, stop < end - EPSILON)


def _encoder(out, rate: Fraction, width: int, height: int, max_width: int):
    scale = min(1.0, max_width / width)
    encoder = out.add_stream("libx264", rate=rate)
    encoder.width, encoder.height = _even(width * scale), _even(height * scale)
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1) / rate
    encoder.options = {"preset": "veryfast", "crf": "26"}
    return encoder


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)
