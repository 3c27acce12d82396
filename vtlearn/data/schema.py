"""The vtlearn record format: one `tf.train.SequenceExample` per video chunk.

A narrated video (minutes long) is cut into chunks of `chunk_seconds` (default
32 s). Each chunk is one record holding that span's frames, audio and
per-second features, plus the video's *whole* caption and step tracks (text is
tiny next to pixels). A training sample reads one chunk, parses its frame bytes
and JPEG-decodes only the T frames it uses. With captions present in every
chunk, the MIL-NCE K-nearest-caption bag and the VT-TWINS n-consecutive-pairs
window are both built from a single record.

Key names follow DeepMind's DMVR reader where one exists. Times are seconds in
*video* time (not chunk time), float32. All context features are optional
unless marked required.

Context features (`SequenceExample.context`):

| key                       | type          | meaning                                         |
|---------------------------|---------------|-------------------------------------------------|
| video/id                  | bytes         | required; video identifier                      |
| video/duration            | float         | required; length of the whole video, s          |
| video/category            | int64         | task/category label, -1 if unknown              |
| video/category_name       | bytes         | human-readable category                         |
| video/labels              | int64 list    | all class labels of a multi-label video (e.g.   |
|                           |               | YouTube-8M); video/category is the first        |
| clip/start/timestamp      | float         | required; chunk start, s                        |
| clip/end/timestamp        | float         | required; chunk end, s                          |
| image/frame_rate          | float         | fps of the stored frames (0 if no frames)       |
| image/height, image/width | int64         | stored frame size, pixels                       |
| WAVEFORM/sample_rate      | float         | audio sample rate, Hz (0 if no audio)           |
| FEATURES/frame_rate       | float         | feature vectors per second (0 if none)          |
| caption/string            | bytes list    | all captions of the video, in time order        |
| caption/start             | float list    | caption start times, s                          |
| caption/end               | float list    | caption end times, s                            |
| caption/clean_string      | bytes list    | synthetic lab only: noise-free description      |
| caption/step              | int64 list    | synthetic lab only: index into segment/* of the |
|                           |               | step a caption talks about, -1 if irrelevant    |
| segment/label             | int64 list    | ground-truth step labels (e.g. CrossTask steps) |
| segment/start             | float list    | step start times, s                             |
| segment/end               | float list    | step end times, s                               |

Feature lists (`SequenceExample.feature_lists`):

| key                       | element           | meaning                                 |
|---------------------------|-------------------|-----------------------------------------|
| image/encoded             | bytes             | one JPEG per frame; frame i shows time  |
|                           |                   | clip/start + i / image/frame_rate        |
| WAVEFORM/feature/floats   | float list        | one element: the chunk's mono waveform  |
|                           |                   | in [-1, 1] at WAVEFORM/sample_rate      |
| FEATURES/2d/floats        | float list [D2]   | one vector per feature step (e.g. 1 s): |
|                           |                   | appearance features (ResNet-style)      |
| FEATURES/3d/floats        | float list [D3]   | motion features (3-D CNN-style)         |

Feature element i covers [clip/start + i / FEATURES/frame_rate, + 1 / rate).

Per-sample cost of this layout, with F stored fps, S = chunk_seconds and T
frames per clip: a sample reads the S·F JPEG byte strings of its chunk and
decodes T of them (MIL-NCE at 10 fps, 32 s chunks: reads 320, decodes 32;
`benchmarks/input_pipeline.py` measures bytes). Shorter chunks read less but
drop captions that cross chunk borders from clip anchors; 32 s holds the 8
consecutive ~4 s captions VT-TWINS uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

# Context keys.
VIDEO_ID = "video/id"
DURATION = "video/duration"
CATEGORY = "video/category"
CATEGORY_NAME = "video/category_name"
LABELS = "video/labels"
CHUNK_START = "clip/start/timestamp"
CHUNK_END = "clip/end/timestamp"
FRAME_RATE = "image/frame_rate"
HEIGHT = "image/height"
WIDTH = "image/width"
SAMPLE_RATE = "WAVEFORM/sample_rate"
FEATURE_RATE = "FEATURES/frame_rate"
CAPTION = "caption/string"
CAPTION_START = "caption/start"
CAPTION_END = "caption/end"
CAPTION_CLEAN = "caption/clean_string"
CAPTION_STEP = "caption/step"
SEGMENT_LABEL = "segment/label"
SEGMENT_START = "segment/start"
SEGMENT_END = "segment/end"
# Feature-list keys.
FRAMES = "image/encoded"
WAVEFORM = "WAVEFORM/feature/floats"
FEATURES_2D = "FEATURES/2d/floats"
FEATURES_3D = "FEATURES/3d/floats"

REQUIRED_CONTEXT = (VIDEO_ID, DURATION, CHUNK_START, CHUNK_END)

DEFAULT_CHUNK_SECONDS = 32.0


@dataclasses.dataclass
class Captions:
    """A caption track. Arrays have one entry per caption, in time order.

    Attributes:
      text: [N] strings.
      start: [N] float seconds.
      end: [N] float seconds.
      clean: optional [N] noise-free strings (synthetic lab).
      step: optional [N] int index of the described step, -1 if irrelevant.
    """

    text: Sequence[str]
    start: np.ndarray
    end: np.ndarray
    clean: Sequence[str] | None = None
    step: np.ndarray | None = None

    def __post_init__(self):
        self.start = np.asarray(self.start, np.float32).reshape(-1)
        self.end = np.asarray(self.end, np.float32).reshape(-1)
        n = len(self.text)
        if self.start.shape != (n,) or self.end.shape != (n,):
            raise ValueError(f"Captions: {n} texts but start {self.start.shape}"
                             f" and end {self.end.shape}")
        if np.any(self.end < self.start):
            i = int(np.argmax(self.end < self.start))
            raise ValueError(f"Captions: caption {i} ends ({self.end[i]}) "
                             f"before it starts ({self.start[i]})")
        order = np.argsort(self.start, kind="stable")
        self.text = [self.text[i] for i in order]
        self.start, self.end = self.start[order], self.end[order]
        if self.clean is not None:
            self.clean = [self.clean[i] for i in order]
        if self.step is not None:
            self.step = np.asarray(self.step, np.int64)[order]


@dataclasses.dataclass
class Segments:
    """Ground-truth steps: [N] int labels with [N] float start/end seconds."""

    label: np.ndarray
    start: np.ndarray
    end: np.ndarray


@dataclasses.dataclass
class Video:
    """A whole narrated video in memory, ready to be chunked into records.

    Attributes:
      video_id: identifier.
      duration: seconds.
      frames: optional uint8 [F, H, W, 3] at `frame_rate`, or already-encoded
        JPEG bytes (a list of F byte strings).
      frame_rate: fps of `frames`.
      waveform: optional float32 [S] mono in [-1, 1] at `sample_rate`.
      sample_rate: Hz.
      features_2d: optional float32 [N, D2] at `feature_rate`.
      features_3d: optional float32 [N, D3] at `feature_rate`.
      feature_rate: feature vectors per second.
      captions: caption track (may be empty).
      segments: optional ground-truth steps.
      category: task label, -1 if unknown.
      category_name: optional task name.
      labels: all class labels of a multi-label video (may be empty).
    """

    video_id: str
    duration: float
    captions: Captions
    frames: np.ndarray | list[bytes] | None = None
    frame_rate: float = 0.0
    waveform: np.ndarray | None = None
    sample_rate: float = 0.0
    features_2d: np.ndarray | None = None
    features_3d: np.ndarray | None = None
    feature_rate: float = 0.0
    segments: Segments | None = None
    category: int = -1
    category_name: str = ""
    labels: Sequence[int] = ()
