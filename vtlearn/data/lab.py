"""The narrated-video lab: a synthetic HowTo100M with known answers.

A lab video shows a task (a *category*) as a sequence of *steps*. A step is
one object (a coloured shape or one of scikit-learn's 8x8 handwritten
digits) doing one action (moving left/right/up/down, rotating, growing,
shrinking, blinking, shaking, changing colour) over a dark gradient
background. Steps come from one global step vocabulary; each category has its
own typical ordered list of steps, and categories share steps, as CrossTask
tasks do. A video follows its category's list, except that steps are skipped
(`skip_prob`) or swapped with their neighbour (`swap_prob`); a video opens
and closes on background (intro/outro) and may pause between steps
(`gap_prob`).

Narration model. The narrator speaks in back-to-back caption slots of
`caption_seconds` separated by pauses of `pause_seconds`, as ASR segments
are. A slot whose midpoint falls in a narrated step is *relevant* (it
describes that step) with probability `groundability[category]`, else it is
chatter; a slot over background or over an unnarrated step
(`unnarrated_prob`) is chatter with probability `chatter_prob`, else
silence. Chatter is an intro before the first step ("welcome back ... today
we are going to <task>"), an outro after the last ("subscribe ..."), or
small talk, sometimes naming a random object of the lab. So, with no
misalignment, the fraction of relevant captions among those spoken over
narrated steps of category c is `groundability[c]`: that is the known answer
for a Hessel-style groundability analysis (per-category intra-video AUC
should rank categories as `lab.json` ranks them). Then each relevant caption
is, with probability `misaligned_fraction`, shifted by 1 s plus a half-normal
of scale `misalign_seconds`, earlier or later with equal odds (people talk
before or after they act). Finally ASR-like noise drops, substitutes or
inserts each word with probability `asr_noise`. Relevant captions draw on
many templates and synonyms ("now slide the pink ring left", "watch how the
box spins", "here we have the number seven", "and it drops"), so the text
model has to generalise.

Ground truth per caption:
  * `caption/step` indexes the video's `segment/*` (the step the caption talks
    about), -1 for chatter.
  * `caption/clean_string` is the canonical step name ("red circle moves
    left"): for a relevant caption, the step it talks about (even when it is
    shifted away from it); for chatter, what is on screen at the caption's
    midpoint, i.e. the name of the step shown then or "empty background".
    Training on clean strings thus removes word noise and irrelevance but
    keeps the temporal misalignment.

Audio (mono, `sample_rate` Hz, 0 = none): each step plays its action's tone,
`ACTION_FREQS` (third-octave spaced), times an object-dependent pitch factor
in [0.965, 1.035], with an action-specific pattern (gliding for moves,
chirping for grow/shrink, gated in sync with blinking, vibrato in sync with
shaking, tremolo for rotate/change colour), so a step's dominant frequency
lies within [0.9, 1.1] times its action's tone. Under it: white background
noise and, while a caption is spoken, band-limited syllabic speech-like
noise.

Features (one vector per second, 0 dims = none): `FEATURES/2d` is a fixed
random projection of the visible object's shape and colour ("appearance"),
`FEATURES/3d` one of the action (plus a little of the shape: "motion"), both
time-weighted over the second, with fixed background vectors for
background, plus Gaussian noise of norm about `feature_noise`.

Determinism and caching. The world (step vocabulary, categories,
projections) is drawn from `seed`; each video's randomness from (seed,
split, index, stream), with separate streams for layout, narration, shifts,
ASR noise, pixels, audio and features, so videos are generated in parallel
and changing one noise knob leaves the rest of a video as it was (e.g.
`misaligned_fraction` only moves captions). Records are serialized with
sorted maps, so the same settings give byte-identical files.
`generate_lab(config, cache_dir)` writes

  <cache_dir>/<hash>/{train,val,test}-0000k-of-0000n.tfrecord
  <cache_dir>/<hash>/vocab.txt
  <cache_dir>/<hash>/lab.json

where <hash> hashes `LAB_VERSION` and the settings; an existing dataset with
the same settings is reused. `vocab.txt` holds every word of every caption
and clean caption of all splits, standing in for the fixed pretrained
word2vec vocabulary the papers use (so the lab has no OOV words). `lab.json`
holds the settings, the step vocabulary, the categories (name, typical steps,
groundability) and per-split counts (see `generate_lab`).

Command line:

  python -m vtlearn.data.lab --preset local --out_dir /tmp/lab [--seed 1]
      [--misaligned_fraction 0.5] [--groundability 0.9,0.1,...] ...

Every `LabConfig` field is a flag; tuples are comma-separated.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vtlearn import cli, fs
from vtlearn.data import records
from vtlearn.data import schema as S
from vtlearn.data.text import Vocabulary, tokenize

MIN_VIDEOS_FOR_WORKERS = 64  # smaller labs render in one process
LAB_VERSION = 2  # part of the cache hash: bump when the output changes
SPLITS = ("train", "val", "test")
PRESETS = ("tiny", "local", "many_steps")

# The visual world ------------------------------------------------------------

SHAPES = ("circle", "square", "triangle", "cross", "diamond", "ring")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven",
               "eight", "nine")
KINDS = SHAPES + tuple(f"digit {w}" for w in DIGIT_WORDS)
ROUND_KINDS = ("circle", "ring")  # rotating them shows nothing
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "white",
           "orange")
PALETTE = np.array([(230, 40, 40), (40, 200, 60), (50, 90, 255), (240, 220, 40),
                    (230, 60, 220), (40, 220, 230), (240, 240, 240),
                    (255, 140, 20)], np.float32)
ACTIONS = ("move_left", "move_right", "move_up", "move_down", "rotate", "grow",
           "shrink", "blink", "shake", "recolour")
ACTION_PHRASES = ("moves left", "moves right", "moves up", "moves down",
                  "rotates", "grows", "shrinks", "blinks", "shakes",
                  "changes colour")
ACTION_FREQS = (200.0, 250.0, 315.0, 400.0, 500.0, 630.0, 800.0, 1000.0,
                1250.0, 1600.0)
BACKGROUND = "empty background"

_BLINK_HZ = 2.0      # on/off cycles per second
_SHAKE_HZ = 3.0
_ROTATE_HZ = 0.35    # turns per second
_RECOLOUR_SECONDS = 0.6  # per palette colour

CATEGORY_NAMES = (
    "tidy the toy shelf", "decorate the window", "build a signpost",
    "sort the blocks", "paint a poster", "set up the board game",
    "fold a paper crane", "arrange the numbers", "clean the desk",
    "hang the flags", "plant a garden", "wrap a present", "tune the radio",
    "fix the clock", "bake a cake", "pack a suitcase")

# Narration templates ---------------------------------------------------------

_KIND_WORDS = {
    "circle": ("circle", "disc", "round one", "dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "triangle piece"),
    "cross": ("cross", "plus sign", "plus"),
    "diamond": ("diamond", "rhombus"),
    "ring": ("ring", "donut", "hoop"),
}
_DIGIT_FORMS = ("{word}", "number {word}", "digit {word}", "{numeral}")
_COLOUR_WORDS = {"magenta": ("magenta", "pink", "purple"),
                 "cyan": ("cyan", "turquoise", "aqua")}
_VERB_PHRASES = (
    ("moves left", "slides to the left", "goes over to the left", "drifts left",
     "travels left"),
    ("moves right", "slides to the right", "goes over to the right",
     "drifts right", "travels right"),
    ("moves up", "rises", "goes up", "floats upward", "climbs up"),
    ("moves down", "drops", "goes down", "sinks", "falls down"),
    ("rotates", "spins around", "turns", "twists around", "spins"),
    ("grows", "gets bigger", "expands", "gets larger", "swells"),
    ("shrinks", "gets smaller", "gets tiny", "contracts", "becomes small"),
    ("blinks", "flashes", "flickers", "disappears and comes back",
     "blinks on and off"),
    ("shakes", "wiggles", "jiggles", "vibrates", "wobbles"),
    ("changes colour", "changes color", "switches colours",
     "turns different colours", "cycles through colours"),
)
_IMPERATIVES = (
    ("move {obj} to the left", "slide {obj} left", "push {obj} over to the left",
     "drag {obj} left"),
    ("move {obj} to the right", "slide {obj} right",
     "push {obj} over to the right", "drag {obj} right"),
    ("move {obj} up", "lift {obj}", "raise {obj} up", "push {obj} to the top"),
    ("move {obj} down", "lower {obj}", "drop {obj} down",
     "push {obj} to the bottom"),
    ("rotate {obj}", "spin {obj} around", "turn {obj}", "twist {obj}"),
    ("make {obj} bigger", "enlarge {obj}", "grow {obj}", "scale {obj} up"),
    ("make {obj} smaller", "shrink {obj}", "scale {obj} down", "squeeze {obj}"),
    ("make {obj} blink", "flash {obj}", "let {obj} flicker",
     "blink {obj} on and off"),
    ("shake {obj}", "wiggle {obj}", "jiggle {obj}", "give {obj} a shake"),
    ("change the colour of {obj}", "recolour {obj}",
     "paint {obj} different colours", "make {obj} change colour"),
)
# Relevant-caption forms, chosen with _FORM_WEIGHTS: imperative, statement,
# pointed statement, object only, action only.
_FORM_WEIGHTS = (0.3, 0.2, 0.15, 0.15, 0.2)
_IMPERATIVE_LEADS = ("now", "next", "so now", "okay now", "then", "and then",
                     "alright", "now we", "now i'm going to", "next you want to",
                     "let's", "we're going to")
_POINTED_LEADS = ("see how", "watch how", "look", "and now", "here")
_OBJECT_LEADS = ("here we have", "take", "this is", "grab", "look at",
                 "you need")
_ACTION_LEADS = ("and it", "now it", "then it", "it")

_INTROS = ("hi everyone and welcome back to my channel",
           "hey guys today i'm going to show you how to {task}",
           "hello and welcome in this video we {task}",
           "what's up everybody", "today we're going to {task}")
_OUTROS = ("thanks for watching", "don't forget to like and subscribe",
           "see you in the next video", "that's it for today",
           "if you enjoyed this please subscribe to my channel")
_CHATTER = ("sorry my dog is barking", "i got this from the craft store",
            "it's been a long day", "let me know in the comments what you think",
            "i love doing this on weekends", "my kids love this one",
            "oops hold on a second", "the weather is so nice today",
            "this reminds me of the {obj} i had as a kid",
            "i always wanted {obj}", "make sure you have everything ready",
            "this part is really easy")
_FILLERS = ("uh", "um", "like", "you know", "so", "yeah", "okay", "the", "a")


# Settings --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LabConfig:
    """Settings of a lab dataset; all of them enter the cache hash.

    Ranges `(lo, hi)` are sampled uniformly. Times are seconds.

    Attributes:
      seed: drives everything; non-negative.
      num_videos: videos in (train, val, test).
      num_shards: TFRecord files in (train, val, test).
      num_categories: tasks; video i of a split has category i % num_categories.
      num_steps: size of the global step vocabulary.
      steps_per_category: length of a category's typical step list.
      digits: use handwritten digits as objects besides shapes.
      skip_prob: chance a video skips each step of its category's list
        (at least two steps remain).
      swap_prob: chance a step swaps places with the next one.
      step_seconds: step duration range.
      gap_prob: chance of a background-only gap before a step (not the first).
      gap_seconds: gap duration range.
      intro_seconds: background before the first step.
      outro_seconds: background after the last step.
      frames: render frames.
      fps: frame rate; all step boundaries fall on frames.
      height: frame height, pixels.
      width: frame width, pixels.
      jpeg_quality: frame encoding quality.
      chunk_seconds: record length (see `schema`).
      caption_seconds: caption slot length range.
      pause_seconds: pause between caption slots.
      groundability: per-category chance that a caption over a narrated step
        describes it; () spreads `groundability_range` over the categories.
      groundability_range: (least, most) groundable category.
      chatter_prob: chance the narrator chatters over background or an
        unnarrated step (else silence).
      unnarrated_prob: chance a step gets no relevant caption.
      misaligned_fraction: chance a relevant caption is shifted in time.
      misalign_seconds: scale of the half-normal shift (plus 1 s).
      asr_noise: per-word chance of a drop, substitution or insertion.
      sample_rate: audio Hz; 0 = no audio, else at least 4000.
      audio_noise: background noise standard deviation.
      speech_noise: speech-like noise standard deviation during captions.
      features_2d: appearance feature dim D2; 0 = none.
      features_3d: motion feature dim D3; 0 = none.
      feature_noise: feature noise norm (features have norm ~1).
    """

    seed: int = 0
    num_videos: tuple[int, int, int] = (160, 32, 32)
    num_shards: tuple[int, int, int] = (4, 1, 1)
    num_categories: int = 8
    num_steps: int = 32
    steps_per_category: int = 7
    digits: bool = True
    skip_prob: float = 0.1
    swap_prob: float = 0.1
    step_seconds: tuple[float, float] = (2.0, 8.0)
    gap_prob: float = 0.3
    gap_seconds: tuple[float, float] = (1.0, 3.0)
    intro_seconds: tuple[float, float] = (1.0, 3.0)
    outro_seconds: tuple[float, float] = (1.0, 3.0)
    frames: bool = True
    fps: float = 10.0
    height: int = 48
    width: int = 48
    jpeg_quality: int = 90
    chunk_seconds: float = S.DEFAULT_CHUNK_SECONDS
    caption_seconds: tuple[float, float] = (2.0, 5.0)
    pause_seconds: tuple[float, float] = (0.0, 1.5)
    groundability: tuple[float, ...] = ()
    groundability_range: tuple[float, float] = (0.3, 0.95)
    chatter_prob: float = 0.5
    unnarrated_prob: float = 0.15
    misaligned_fraction: float = 0.3
    misalign_seconds: float = 4.0
    asr_noise: float = 0.05
    sample_rate: int = 8000
    audio_noise: float = 0.02
    speech_noise: float = 0.05
    features_2d: int = 64
    features_3d: int = 64
    feature_noise: float = 0.3

    def __post_init__(self):
        for f in dataclasses.fields(self):  # canonical types: one hash per lab
            object.__setattr__(self, f.name,
                               _coerce(f.type, getattr(self, f.name)))
        _validate(self)


def _coerce(annotation: str, value: Any) -> Any:
    """Casts a setting (e.g. from JSON, flags or a ConfigDict) to its type."""
    def scalar(v):
        if "float" in annotation:
            return float(v)
        if annotation == "bool":
            return bool(v)
        if int(v) != v:
            raise ValueError(f"LabConfig: expected an integer, got {v!r}")
        return int(v)

    if annotation.startswith("tuple"):
        return tuple(scalar(v) for v in (
            value if isinstance(value, (tuple, list)) else (value,)))
    return scalar(value)


def _validate(c: LabConfig) -> None:
    """Raises ValueError naming the first inconsistent setting."""
    def check(ok: bool, message: str):
        if not ok:
            raise ValueError(f"LabConfig: {message}")

    check(c.seed >= 0, f"seed must be >= 0, got {c.seed}")
    check(len(c.num_videos) == 3 and min(c.num_videos) >= 0,
          f"num_videos must be 3 counts >= 0, got {c.num_videos}")
    check(len(c.num_shards) == 3 and min(c.num_shards) >= 1,
          f"num_shards must be 3 counts >= 1, got {c.num_shards}")
    num_kinds = len(KINDS) if c.digits else len(SHAPES)
    possible = len(COLOURS) * (num_kinds * len(ACTIONS) - len(ROUND_KINDS))
    check(c.num_categories >= 1, "num_categories must be >= 1")
    check(2 <= c.steps_per_category <= c.num_steps <= possible,
          f"need 2 <= steps_per_category ({c.steps_per_category}) <= num_steps"
          f" ({c.num_steps}) <= {possible}")
    check(c.num_steps <= c.num_categories * c.steps_per_category,
          f"num_steps ({c.num_steps}) > num_categories * steps_per_category: "
          "some steps would never be shown")
    for name in ("skip_prob", "swap_prob", "gap_prob", "chatter_prob",
                 "unnarrated_prob", "misaligned_fraction", "asr_noise"):
        check(0 <= getattr(c, name) <= 1, f"{name} must lie in [0, 1]")
    for name in ("step_seconds", "gap_seconds", "intro_seconds", "outro_seconds",
                 "caption_seconds", "pause_seconds", "groundability_range"):
        lo, hi = getattr(c, name)
        check(0 <= lo <= hi, f"{name} must be (lo, hi) with 0 <= lo <= hi")
    check(c.step_seconds[0] > 0 and c.caption_seconds[0] > 0,
          "step_seconds and caption_seconds must be positive")
    check(c.groundability_range[1] <= 1, "groundability_range must be <= 1")
    check(not c.groundability or (len(c.groundability) == c.num_categories and
                                  all(0 <= g <= 1 for g in c.groundability)),
          f"groundability needs {c.num_categories} values in [0, 1]")
    check(c.fps > 0 and c.chunk_seconds > 0, "fps and chunk_seconds must be > 0")
    check(c.height >= 16 and c.width >= 16, "frames must be at least 16x16")
    check(1 <= c.jpeg_quality <= 100, "jpeg_quality must lie in [1, 100]")
    check(c.sample_rate == 0 or c.sample_rate >= 4000,
          f"sample_rate must be 0 or >= 4000 (tones reach 1.8 kHz), "
          f"got {c.sample_rate}")
    check(min(c.audio_noise, c.speech_noise, c.feature_noise,
              c.misalign_seconds) >= 0, "noise scales must be >= 0")
    check(min(c.features_2d, c.features_3d) >= 0, "feature dims must be >= 0")


def lab_config(preset: str = "local", **overrides: Any) -> LabConfig:
    """The settings of a preset, with fields overridden.

    Args:
      preset: "tiny" (tests: 3 categories, 6/3/3 videos of ~10 s at 32x32,
        8 s chunks, a second to generate), "local" (2 CPU cores: 8
        categories, 160/32/32 videos of ~30-60 s at 48x48 and 10 fps, 4 kHz
        audio, 64+64-dim features; 32 steps, so its test split names 33
        distinct clean captions, each 3 points of a retrieval recall) or
        "many_steps" (local's videos from a vocabulary of 224 steps in 32
        categories of 8, and 160/32/64 videos: the test split names 216
        distinct steps, so a recall resolves half a point).
      **overrides: `LabConfig` fields.
    """
    presets = {
        "local": dict(sample_rate=4000),  # halves the disk audio takes
        "many_steps": dict(sample_rate=4000, num_steps=224, num_categories=32,
                           steps_per_category=8, num_videos=(160, 32, 64)),
        "tiny": dict(num_videos=(6, 3, 3), num_shards=(2, 1, 1),
                     num_categories=3, num_steps=8, steps_per_category=4,
                     step_seconds=(1.5, 3.0), gap_seconds=(0.5, 1.0),
                     intro_seconds=(1.0, 1.5), outro_seconds=(0.5, 1.0),
                     height=32, width=32, chunk_seconds=8.0,
                     caption_seconds=(1.5, 3.0), pause_seconds=(0.0, 0.5),
                     features_2d=16, features_3d=16),
    }
    if preset not in presets:
        raise ValueError(f"unknown lab preset {preset!r}; choose from {PRESETS}")
    return LabConfig(**{**presets[preset], **overrides})


def settings_dict(config: LabConfig) -> dict[str, Any]:
    """The settings as stored in lab.json (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_hash(config: LabConfig) -> str:
    """16 hex digits identifying the generator version and the settings."""
    blob = json.dumps({"version": LAB_VERSION, "settings": settings_dict(config)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> str:
    """$VTLEARN_DATA_DIR/lab if that is set (any filesystem), else ~/.cache/vtlearn/lab."""
    root = os.environ.get("VTLEARN_DATA_DIR")
    return fs.join(root, "lab") if root else os.path.expanduser("~/.cache/vtlearn/lab")


# The world: steps and categories ---------------------------------------------

@dataclasses.dataclass(frozen=True)
class Step:
    """A (object, action) pair of the global step vocabulary."""

    kind: int
    colour: int
    action: int

    @property
    def object_name(self) -> str:
        return f"{COLOURS[self.colour]} {KINDS[self.kind]}"

    @property
    def name(self) -> str:
        """The canonical description, e.g. "red circle moves left"."""
        return f"{self.object_name} {ACTION_PHRASES[self.action]}"


@dataclasses.dataclass(frozen=True, eq=False)
class World:
    """What all videos of one seed share.

    Attributes:
      steps: the global step vocabulary; a step id indexes it.
      categories: per category, its typical ordered step ids.
      category_names: per category.
      groundability: per category.
      instructional: per category, a flag for Hessel et al.'s §5 comparison of
        models trained on instructional videos only or on all: the even
        category ids, independent of their groundability.
      appearance: float32 [num_steps, D2] step appearance vectors.
      motion: float32 [num_steps, D3] step motion vectors.
      background_appearance: float32 [D2].
      background_motion: float32 [D3].
    """

    steps: tuple[Step, ...]
    categories: tuple[tuple[int, ...], ...]
    category_names: tuple[str, ...]
    groundability: tuple[float, ...]
    instructional: tuple[bool, ...]
    appearance: np.ndarray
    motion: np.ndarray
    background_appearance: np.ndarray
    background_motion: np.ndarray


@functools.lru_cache(maxsize=8)
def build_world(config: LabConfig) -> World:
    """Draws the step vocabulary, categories and feature projections."""
    rng = np.random.default_rng([config.seed, 1000])
    kinds = range(len(KINDS) if config.digits else len(SHAPES))
    candidates = [Step(k, c, a) for k in kinds for c in range(len(COLOURS))
                  for a in range(len(ACTIONS))
                  if not (ACTIONS[a] == "rotate" and KINDS[k] in ROUND_KINDS)]
    picked = rng.choice(len(candidates), config.num_steps, replace=False)
    steps = tuple(candidates[i] for i in picked)

    # Every step goes to some category; the remaining slots are shared steps.
    n_cat, per_cat = config.num_categories, config.steps_per_category
    members = [[] for _ in range(n_cat)]
    for j, s in enumerate(rng.permutation(config.num_steps)):
        members[j % n_cat].append(int(s))
    for m in members:
        free = [s for s in range(config.num_steps) if s not in m]
        m.extend(int(s) for s in rng.choice(free, per_cat - len(m), replace=False))
    categories = tuple(tuple(m[i] for i in rng.permutation(per_cat))
                       for m in members)
    names = tuple(CATEGORY_NAMES[i % len(CATEGORY_NAMES)] +
                  (f" {i // len(CATEGORY_NAMES) + 1}" if i >= len(CATEGORY_NAMES)
                   else "") for i in range(n_cat))
    ground = config.groundability or tuple(
        float(g) for g in np.linspace(*config.groundability_range, n_cat))

    def unit(n: int, d: int) -> np.ndarray:
        """[n, d] random vectors of norm ~1 ([n, 1] when features are off)."""
        d = max(d, 1)
        return (rng.normal(size=(n, d)) / math.sqrt(d)).astype(np.float32)

    d2, d3 = config.features_2d, config.features_3d
    kind_2d, colour_2d = unit(len(KINDS), d2), unit(len(COLOURS), d2)
    action_3d, kind_3d = unit(len(ACTIONS), d3), unit(len(KINDS), d3)
    bg_2d, bg_3d = unit(1, d2), unit(1, d3)
    k, c, a = (np.array([getattr(s, f) for s in steps])
               for f in ("kind", "colour", "action"))
    return World(
        steps=steps, categories=categories, category_names=names,
        groundability=tuple(ground), instructional=tuple(c % 2 == 0 for c in range(n_cat)),
        appearance=(kind_2d[k] + colour_2d[c]) / math.sqrt(2),
        motion=(action_3d[a] + 0.3 * kind_3d[k]) / math.sqrt(1.09),
        background_appearance=bg_2d[0], background_motion=bg_3d[0])


# One video -------------------------------------------------------------------

_LAYOUT, _NARRATION, _SHIFT, _ASR, _PIXELS, _AUDIO, _FEATURES = range(7)


def _rng(config: LabConfig, split: str, index: int, stream: int,
         *sub: int) -> np.random.Generator:
    """The generator of one randomness stream of one video."""
    return np.random.default_rng([config.seed, SPLITS.index(split), index,
                                  stream, *sub])


@dataclasses.dataclass(frozen=True)
class _Layout:
    """When each step of a video happens. Arrays are [K], times in seconds."""

    category: int
    steps: np.ndarray
    start: np.ndarray
    end: np.ndarray
    duration: float

    def step_at(self, t: float) -> int:
        """Index of the step shown at time t, -1 for background."""
        hit = np.flatnonzero((self.start <= t) & (t < self.end))
        return int(hit[0]) if hit.size else -1


def _layout(config: LabConfig, world: World, category: int,
            rng: np.random.Generator) -> _Layout:
    steps = [s for s in world.categories[category]
             if rng.random() >= config.skip_prob]
    if len(steps) < 2:
        steps = list(world.categories[category][:2])
    for i in range(len(steps) - 1):
        if rng.random() < config.swap_prob:
            steps[i], steps[i + 1] = steps[i + 1], steps[i]

    def frames(lo_hi: tuple[float, float]) -> int:
        return round(rng.uniform(*lo_hi) * config.fps)

    t = frames(config.intro_seconds)
    start, end = [], []
    for i in range(len(steps)):
        if i and rng.random() < config.gap_prob:
            t += frames(config.gap_seconds)
        start.append(t)
        t += max(1, frames(config.step_seconds))
        end.append(t)
    t += max(1, frames(config.outro_seconds))
    return _Layout(category, np.array(steps, np.int64),
                   np.array(start) / config.fps, np.array(end) / config.fps,
                   t / config.fps)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _object_phrase(step: Step, rng: np.random.Generator,
                   colour_prob: float = 0.7) -> str:
    """A varied noun phrase for a step's object, e.g. "the pink donut"."""
    kind = KINDS[step.kind]
    if kind in _KIND_WORDS:
        noun = _pick(rng, _KIND_WORDS[kind])
    else:
        word = kind.split()[1]
        noun = _pick(rng, _DIGIT_FORMS).format(word=word,
                                               numeral=DIGIT_WORDS.index(word))
    colour = COLOURS[step.colour]
    if rng.random() < colour_prob:
        noun = f"{_pick(rng, _COLOUR_WORDS.get(colour, (colour,)))} {noun}"
    return f"the {noun}"


def _describe(step: Step, rng: np.random.Generator) -> str:
    """A relevant caption for a step, in one of five forms."""
    form = rng.choice(len(_FORM_WEIGHTS), p=_FORM_WEIGHTS)
    obj = _object_phrase(step, rng)
    verb = _pick(rng, _VERB_PHRASES[step.action])
    if form == 0:
        imperative = _pick(rng, _IMPERATIVES[step.action]).format(obj=obj)
        return f"{_pick(rng, _IMPERATIVE_LEADS)} {imperative}"
    if form == 1:
        return f"{obj} {verb}"
    if form == 2:
        return f"{_pick(rng, _POINTED_LEADS)} {obj} {verb}"
    if form == 3:
        return f"{_pick(rng, _OBJECT_LEADS)} {obj}"
    return f"{_pick(rng, _ACTION_LEADS)} {verb}"


def _chatter(where: str, task: str, world: World,
             rng: np.random.Generator) -> str:
    """An irrelevant caption: "intro", "outro" or small talk ("chatter")."""
    if where == "intro":
        return _pick(rng, _INTROS).format(task=task)
    if where == "outro":
        return _pick(rng, _OUTROS)
    decoy = world.steps[int(rng.integers(len(world.steps)))]
    return _pick(rng, _CHATTER).format(obj=_object_phrase(decoy, rng, 1.0))


@functools.cache
def _lexicon() -> tuple[str, ...]:
    """Words ASR substitutions draw from: every template word."""
    texts = [*_FILLERS, *_INTROS, *_OUTROS, *_CHATTER, *_IMPERATIVE_LEADS,
             *_POINTED_LEADS, *_OBJECT_LEADS, *_ACTION_LEADS, *DIGIT_WORDS,
             *COLOURS, *CATEGORY_NAMES, *_DIGIT_FORMS,
             *(w for ws in _KIND_WORDS.values() for w in ws),
             *(w for ws in _COLOUR_WORDS.values() for w in ws),
             *(w for ws in _VERB_PHRASES + _IMPERATIVES for w in ws)]
    words = {w for t in texts for w in tokenize(t)}
    return tuple(sorted(words - {"obj", "task", "word", "numeral"}))


def _asr(text: str, rng: np.random.Generator, p: float) -> str:
    """Drops, substitutes or inserts each word with probability p.

    Draws a fixed amount of randomness per word, so raising p only corrupts
    more words of the same caption.
    """
    lexicon, out = _lexicon(), []
    words = text.split()
    for word, (hit, op, sub, ins) in zip(words, rng.random((len(words), 4))):
        if hit >= p:
            out.append(word)
        elif op < 1 / 3:
            continue
        elif op < 2 / 3:
            out.append(lexicon[int(sub * len(lexicon))])
        else:
            out.extend((word, _FILLERS[int(ins * len(_FILLERS))]))
    return " ".join(out or words[:1])


def _narrate(config: LabConfig, world: World, layout: _Layout, split: str,
             index: int) -> S.Captions:
    """The caption track (see the module docstring for the model)."""
    rng = _rng(config, split, index, _NARRATION)
    narrated = rng.random(len(layout.steps)) >= config.unnarrated_prob
    slots = []
    t = rng.uniform(*config.pause_seconds)
    while t + config.caption_seconds[0] <= layout.duration:
        end = min(t + rng.uniform(*config.caption_seconds), layout.duration)
        slots.append((t, end))
        t = end + rng.uniform(*config.pause_seconds)

    ground = world.groundability[layout.category]
    task = world.category_names[layout.category]
    text, start, end, clean, step = [], [], [], [], []
    for i, (s, e) in enumerate(slots):
        srng = _rng(config, split, index, _NARRATION, i)
        relevant_draw, talk_draw = srng.random(2)
        mid = (s + e) / 2
        k = layout.step_at(mid)
        if k >= 0 and narrated[k]:
            relevant = relevant_draw < ground
        elif talk_draw < config.chatter_prob:
            relevant = False
        else:
            continue
        if relevant:
            the_step = world.steps[layout.steps[k]]
            words = _describe(the_step, srng)
            shift_rng = _rng(config, split, index, _SHIFT, i)
            hit, later = shift_rng.random(2)
            shift = 1.0 + config.misalign_seconds * abs(shift_rng.normal())
            if hit < config.misaligned_fraction:
                moved = min(max(0.0, s + (shift if later < 0.5 else -shift)),
                            layout.duration - (e - s))
                s, e = moved, moved + (e - s)
            clean.append(the_step.name)
            step.append(k)
        else:
            where = ("intro" if mid < layout.start[0] else
                     "outro" if mid >= layout.end[-1] else "chatter")
            words = _chatter(where, task, world, srng)
            clean.append(world.steps[layout.steps[k]].name if k >= 0
                         else BACKGROUND)
            step.append(-1)
        text.append(_asr(words, _rng(config, split, index, _ASR, i),
                         config.asr_noise))
        start.append(round(s, 2))
        end.append(round(e, 2))
    return S.Captions(text=text, start=np.array(start), end=np.array(end),
                      clean=clean, step=np.array(step, np.int64))


# Pixels ------------------------------------------------------------------------

@functools.cache
def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: float32 [N, 8, 8] in [0, 1] and labels [N]."""
    from sklearn.datasets import load_digits  # slow import: only when drawn

    digits = load_digits()
    return (digits.images / 16).astype(np.float32), digits.target


def _shape_alpha(kind: str, u: np.ndarray, v: np.ndarray,
                 pixels_per_unit: np.ndarray) -> np.ndarray:
    """Antialiased coverage of a shape from (approximate) signed distances.

    Args:
      kind: a SHAPES name.
      u, v: float32 [n, H, W] pixel positions in object units (x right,
        y down; the shape fills about [-1, 1]^2).
      pixels_per_unit: [n, 1, 1] object scale in pixels.

    Returns:
      float32 [n, H, W] coverage in [0, 1].
    """
    au, av = np.abs(u), np.abs(v)
    if kind == "circle":
        sdf = np.hypot(u, v) - 0.9
    elif kind == "square":
        sdf = np.maximum(au, av) - 0.8
    elif kind == "triangle":  # equilateral, circumradius 1.1, apex up
        u, v = u / 1.1, v / 1.1
        sdf = 1.1 * np.maximum(v - 0.5, 0.866 * np.abs(u) - 0.5 * v - 0.5)
    elif kind == "cross":
        sdf = np.minimum(np.maximum(au - 0.95, av - 0.3),
                         np.maximum(au - 0.3, av - 0.95))
    elif kind == "diamond":
        sdf = (au + av - 1.05) / math.sqrt(2)
    elif kind == "ring":
        sdf = np.abs(np.hypot(u, v) - 0.7) - 0.22
    else:
        raise ValueError(f"unknown shape {kind!r}")
    return np.clip(0.5 - sdf * pixels_per_unit, 0, 1)


def _digit_alpha(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Coverage of an [8, 8] digit spread over [-1, 1]^2, at u, v [n, H, W].

    The digit, with a 2-texel blank border, is upsampled bilinearly 4x to
    [48, 48] (the digit's 8 texels span rows 8-40), then read at the nearest
    texel; beyond the border it is blank.
    """
    up = _UPSAMPLE @ np.pad(image, 2) @ _UPSAMPLE.T
    x = np.clip(((u + 1) * 16 + 8).astype(np.int32), 0, 47)
    y = np.clip(((v + 1) * 16 + 8).astype(np.int32), 0, 47)
    return np.minimum(up[y, x] * 1.6, 1)


def _bilinear_upsample(n: int, factor: int) -> np.ndarray:
    """[n * factor, n] matrix upsampling a signal of n samples linearly."""
    pos = (np.arange(n * factor) + 0.5) / factor - 0.5
    return np.maximum(0, 1 - np.abs(pos[:, None] - np.arange(n)[None])).astype(
        np.float32)


_UPSAMPLE = _bilinear_upsample(12, 4)


def _blink_on(t: np.ndarray) -> np.ndarray:
    """Whether a blinking object is visible at step time t (seconds)."""
    return np.floor(t * 2 * _BLINK_HZ) % 2 == 0


def _motion(action: str, t: np.ndarray, p: np.ndarray, height: int, width: int,
            rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame object pose for an action.

    Args:
      action: an ACTIONS name.
      t: [n] seconds since the step began.
      p: [n] progress through the step in [0, 1).

    Returns:
      Arrays [n]: centre x/y (pixels), scale, angle (radians), visible.
    """
    cx = width / 2 + rng.uniform(-0.1, 0.1) * width
    cy = height / 2 + rng.uniform(-0.1, 0.1) * height
    sweep = (1 - 2 * p) * 0.22
    pose = dict(x=np.full_like(t, cx), y=np.full_like(t, cy),
                scale=np.ones_like(t), angle=np.full_like(t, rng.uniform(-0.2, 0.2)),
                visible=np.ones_like(t))
    if action == "move_left":
        pose["x"] = width / 2 + sweep * width
    elif action == "move_right":
        pose["x"] = width / 2 - sweep * width
    elif action == "move_up":
        pose["y"] = height / 2 + sweep * height
    elif action == "move_down":
        pose["y"] = height / 2 - sweep * height
    elif action == "rotate":
        pose["angle"] = pose["angle"] + 2 * np.pi * _ROTATE_HZ * t
    elif action == "grow":
        pose["scale"] = 0.55 + 0.75 * p
    elif action == "shrink":
        pose["scale"] = 1.3 - 0.75 * p
    elif action == "blink":
        pose["visible"] = _blink_on(t).astype(t.dtype)
    elif action == "shake":
        pose["x"] = cx + 0.07 * width * np.sin(2 * np.pi * _SHAKE_HZ * t)
    return pose


def _render(config: LabConfig, world: World, layout: _Layout, split: str,
            index: int) -> np.ndarray:
    """The frames: uint8 [F, H, W, 3], F = duration * fps."""
    h, w, fps = config.height, config.width, config.fps
    rng = _rng(config, split, index, _PIXELS)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    low, high = rng.uniform(8, 80, (2, 3)).astype(np.float32)
    phi = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(phi) * xs / w + np.sin(phi) * ys / h)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    num_frames = round(layout.duration * fps)
    frames = np.empty((num_frames, h, w, 3), np.float32)
    frames[:] = low + ramp[..., None] * (high - low)
    images, labels = _digit_images() if config.digits else (None, None)

    for j, step_id in enumerate(layout.steps):
        step = world.steps[step_id]
        srng = _rng(config, split, index, _PIXELS, j)
        a, b = round(layout.start[j] * fps), round(layout.end[j] * fps)
        t = (np.arange(b - a, dtype=np.float32) / fps)[:, None, None]
        p = t / float(layout.end[j] - layout.start[j])
        pose = _motion(ACTIONS[step.action], t, p, h, w, srng)
        kind = KINDS[step.kind]
        radius = 0.16 * min(h, w) * srng.uniform(0.9, 1.1) * (
            1.0 if kind in SHAPES else 1.3)
        ppu = radius * pose["scale"]
        cos, sin = np.cos(pose["angle"]), np.sin(pose["angle"])
        dx, dy = xs - pose["x"], ys - pose["y"]
        u = (cos * dx + sin * dy) / ppu
        v = (-sin * dx + cos * dy) / ppu
        if kind in SHAPES:
            alpha = _shape_alpha(kind, u, v, ppu)
        else:
            digit = DIGIT_WORDS.index(kind.split()[1])
            image = images[srng.choice(np.flatnonzero(labels == digit))]
            alpha = _digit_alpha(image, u, v)
        alpha = (alpha * pose["visible"])[..., None]
        colour = PALETTE[step.colour][None, None, None]
        if ACTIONS[step.action] == "recolour":
            pos = t[..., None] / _RECOLOUR_SECONDS
            first = (step.colour + np.floor(pos).astype(np.int64)) % len(PALETTE)
            frac = pos - np.floor(pos)
            colour = (PALETTE[first[..., 0]] * (1 - frac)
                      + PALETTE[(first[..., 0] + 1) % len(PALETTE)] * frac)
        shown = frames[a:b]
        shown += alpha * (colour - shown)
    return (frames + 0.5).astype(np.uint8)  # convex mixes of values in [0, 255]


# Audio -------------------------------------------------------------------------

def _audio(config: LabConfig, world: World, layout: _Layout,
           captions: S.Captions, split: str, index: int) -> np.ndarray:
    """The waveform: float32 [duration * sample_rate] in [-1, 1]."""
    sr = config.sample_rate
    rng = _rng(config, split, index, _AUDIO)
    wave = rng.normal(0, config.audio_noise, round(layout.duration * sr))
    for j, step_id in enumerate(layout.steps):
        step = world.steps[step_id]
        a, b = round(layout.start[j] * sr), round(layout.end[j] * sr)
        t = np.arange(b - a) / sr
        d = layout.end[j] - layout.start[j]
        pitch = 0.965 + 0.07 * step.kind / (len(KINDS) - 1)
        glide, gain = _sound_pattern(ACTIONS[step.action], t, t / d)
        freq = ACTION_FREQS[step.action] * pitch * glide
        fade = np.clip(np.minimum(t, d - t) / 0.02, 0, 1)
        wave[a:b] += 0.3 * fade * gain * np.sin(2 * np.pi * np.cumsum(freq) / sr)
    if config.speech_noise:
        for s, e in zip(captions.start, captions.end):
            a, b = round(float(s) * sr), round(float(e) * sr)
            if b - a > 1:
                wave[a:b] += config.speech_noise * _babble(b - a, sr, rng)
    return np.clip(wave, -1, 1).astype(np.float32)


def _sound_pattern(action: str, t: np.ndarray,
                   p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An action's frequency factor and gain over time, both [n].

    Args:
      action: an ACTIONS name.
      t: [n] seconds since the step began.
      p: [n] progress through the step in [0, 1).
    """
    ones = np.ones_like(t)
    if action in ("move_left", "move_down"):
        return 1.03 - 0.06 * p, ones
    if action in ("move_right", "move_up"):
        return 0.97 + 0.06 * p, ones
    if action == "grow":
        return 0.94 + 0.12 * p, ones
    if action == "shrink":
        return 1.06 - 0.12 * p, ones
    if action == "shake":
        return 1 + 0.03 * np.sin(2 * np.pi * _SHAKE_HZ * t), ones
    if action == "blink":
        return ones, _blink_on(t).astype(t.dtype)
    if action == "rotate":
        return ones, 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    if action == "recolour":
        return ones, 0.6 + 0.4 * np.cos(2 * np.pi * t / _RECOLOUR_SECONDS)
    raise ValueError(f"unknown action {action!r}")


def _babble(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance speech-like noise: 300-3000 Hz, ~4 syllables/s. [n]."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    hz = np.fft.rfftfreq(n, 1 / sr)
    spectrum[(hz < 300) | (hz > min(3000, 0.45 * sr))] = 0
    noise = np.fft.irfft(spectrum, n)
    noise /= max(noise.std(), 1e-9)
    t = np.arange(n) / sr
    syllables = np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 2 * np.pi))
    return noise * syllables ** 2 * math.sqrt(8 / 3)


# Features ----------------------------------------------------------------------

def _features(config: LabConfig, world: World, layout: _Layout, split: str,
              index: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-second appearance [N, D2] and motion [N, D3] features (or None)."""
    rng = _rng(config, split, index, _FEATURES)
    n = math.ceil(layout.duration - 1e-6)
    lo = np.arange(n, dtype=np.float64)[:, None]
    hi = np.minimum(lo + 1, layout.duration)
    overlap = np.clip(np.minimum(hi, layout.end) - np.maximum(lo, layout.start),
                      0, None)  # [N, K] seconds of step k in second i
    background = (hi - lo)[:, 0] - overlap.sum(1)
    weights = np.concatenate([overlap, background[:, None]], 1) / (hi - lo)
    out = []
    for dim, table, bg in ((config.features_2d, world.appearance,
                            world.background_appearance),
                           (config.features_3d, world.motion,
                            world.background_motion)):
        if not dim:
            out.append(None)
            continue
        clean = weights @ np.concatenate([table[layout.steps], bg[None]])
        noise = rng.normal(0, config.feature_noise / math.sqrt(dim), clean.shape)
        out.append((clean + noise).astype(np.float32))
    return out[0], out[1]


def make_video(config: LabConfig, split: str, index: int) -> S.Video:
    """Video `index` of `split`; depends only on (config, split, index)."""
    world = build_world(config)
    category = index % config.num_categories
    layout = _layout(config, world, category,
                     _rng(config, split, index, _LAYOUT))
    captions = _narrate(config, world, layout, split, index)
    features_2d, features_3d = _features(config, world, layout, split, index)
    return S.Video(
        video_id=f"lab-{split}-{index:05d}",
        duration=layout.duration,
        captions=captions,
        frames=(_render(config, world, layout, split, index)
                if config.frames else None),
        frame_rate=config.fps,
        waveform=(_audio(config, world, layout, captions, split, index)
                  if config.sample_rate else None),
        sample_rate=float(config.sample_rate),
        features_2d=features_2d,
        features_3d=features_3d,
        feature_rate=1.0,
        segments=S.Segments(label=layout.steps, start=layout.start,
                            end=layout.end),
        category=category,
        category_name=world.category_names[category])


def _video_records(task: tuple[LabConfig, str, int]) -> tuple[list[bytes], dict]:
    """Serialized chunk records of one video plus what the metadata counts."""
    config, split, index = task
    video = make_video(config, split, index)
    examples = records.video_to_examples(video, config.chunk_seconds,
                                         config.jpeg_quality)
    caps = video.captions
    return examples, dict(category=video.category, seconds=video.duration,
                          frames=0 if video.frames is None else len(video.frames),
                          texts=list(caps.text) + list(caps.clean),
                          relevant=int(np.sum(caps.step >= 0)),
                          captions=len(caps.text),
                          segments=len(video.segments.label))


# The dataset -------------------------------------------------------------------

@dataclasses.dataclass
class LabDataset:
    """A generated lab on disk.

    Attributes:
      root: its directory, `<cache_dir>/<hash>`.
      train_files: TFRecord paths of the train split.
      val_files: of the val split.
      test_files: of the test split.
      vocab_path: `vocab.txt` (load with `Vocabulary.load`).
      metadata: parsed `lab.json` (see `generate_lab`).
    """

    root: str
    train_files: list[str]
    val_files: list[str]
    test_files: list[str]
    vocab_path: str
    metadata: dict[str, Any]

    def files(self, split: str) -> list[str]:
        """The TFRecord paths of "train", "val" or "test"."""
        return {"train": self.train_files, "val": self.val_files,
                "test": self.test_files}[split]


def load_lab(root: str | os.PathLike) -> LabDataset:
    """Opens a lab written by `generate_lab` from its `<hash>` directory."""
    root = os.fspath(root)
    path = fs.join(root, "lab.json")
    if not fs.exists(path):
        raise FileNotFoundError(f"{path} does not exist: not a generated lab")
    metadata = json.loads(fs.read_text(path))
    paths = {s: [fs.join(root, f) for f in metadata["splits"][s]["files"]] for s in SPLITS}
    return LabDataset(root=root, train_files=paths["train"],
                      val_files=paths["val"], test_files=paths["test"],
                      vocab_path=fs.join(root, "vocab.txt"), metadata=metadata)


def _current(root: str, config: LabConfig) -> LabDataset | None:
    """The lab at root if it is complete and was made with these settings."""
    try:
        lab = load_lab(root)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    meta = lab.metadata
    complete = all(fs.exists(f) for s in SPLITS for f in lab.files(s))
    if (meta.get("version") == LAB_VERSION and complete
            and meta.get("settings") == settings_dict(config)):
        return lab
    return None


def generate_lab(config: LabConfig, cache_dir: str | Path | None = None, *,
                 workers: int | None = None) -> LabDataset:
    """Generates the lab into `<cache_dir>/<hash>`, or reuses it if current.

    Generation goes to a local temporary directory that is renamed into
    place, so concurrent callers never see a partial lab. A `cache_dir` on
    another filesystem (`gs://...`, `vtlearn.fs`) gets the generated files
    copied in, `lab.json` last: a lab without it is not a lab.

    `lab.json` keys:
      version, hash: generator version and settings hash.
      settings: the `LabConfig` fields.
      kinds, colours, actions: object kinds (shapes, digits), colour and
        action names; action_freqs: each action's tone, Hz.
      background: the clean string of background-only time.
      steps: [{id, name, kind, colour, action}], the step vocabulary
        (`segment/label` values).
      categories: [{id, name, steps (typical ordered step ids),
        groundability}].
      vocab_size: words in vocab.txt.
      splits: {train, val, test} -> {files (relative to root), videos,
        records, seconds, frames, captions, relevant_captions, segments,
        per_category: {videos, captions, relevant_captions} (lists indexed
        by category id)}.

    Args:
      config: the settings.
      cache_dir: parent directory (any filesystem); default `default_cache_dir()`.
      workers: processes rendering videos (spawned, for labs of at least
        `MIN_VIDEOS_FOR_WORKERS` videos); default the CPU count.

    Returns:
      The dataset.
    """
    cache_dir = os.fspath(cache_dir) if cache_dir else default_cache_dir()
    key = config_hash(config)
    root = fs.join(cache_dir, key)
    lab = _current(root, config)
    if lab:
        return lab
    local = fs.is_local(cache_dir)
    tmp = Path(cache_dir if local else tempfile.gettempdir()) / f".{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _write_lab(config, tmp, workers or os.cpu_count() or 1)
    lab = _current(root, config)
    if lab:  # another process finished first
        shutil.rmtree(tmp)
        return lab
    if local:
        shutil.rmtree(root, ignore_errors=True)
        os.rename(tmp, root)
    else:
        names = sorted(fs.walk_files(tmp), key=lambda n: n == "lab.json")
        for name in names:
            fs.makedirs(fs.join(root, *name.split("/")[:-1]))
            fs.copy(tmp / name, fs.join(root, name))
        shutil.rmtree(tmp)
    return load_lab(root)


def _write_lab(config: LabConfig, out: Path, workers: int) -> None:
    """Writes shards, vocab.txt and lab.json (last) into `out`."""
    world = build_world(config)
    total = sum(config.num_videos)
    # Spawned, not forked: forking a process that runs TensorFlow or JAX
    # threads can crash the child. A spawned worker imports TensorFlow anew
    # (seconds), which pays off only for larger labs.
    use_pool = workers > 1 and total >= MIN_VIDEOS_FOR_WORKERS
    pool = (multiprocessing.get_context("spawn").Pool(min(workers, total))
            if use_pool else None)
    texts, splits = [], {}
    try:
        for split, n, num_shards in zip(SPLITS, config.num_videos,
                                        config.num_shards):
            tasks = [(config, split, i) for i in range(n)]
            counts = _SplitCounts(config.num_categories)
            paths = records.shard_paths(out / split, num_shards)
            bounds = np.linspace(0, n, num_shards + 1).round().astype(int)
            with tqdm(total=n, unit="video", desc=f"lab {split}", mininterval=2.0) as bar:
                results = _counted(pool.imap(_video_records, tasks) if pool
                                   else map(_video_records, tasks), bar)
                for path, count in zip(paths, np.diff(bounds)):
                    records.write_tfrecord(path, counts.drain(results, count, texts))
            splits[split] = dict(files=[Path(p).name for p in paths],
                                 **counts.as_dict())
    finally:
        if pool:
            pool.close()
            pool.join()
    vocab = Vocabulary.build(texts)
    vocab.save(out / "vocab.txt")
    metadata = dict(
        version=LAB_VERSION, hash=config_hash(config),
        settings=settings_dict(config), kinds=list(KINDS),
        colours=list(COLOURS), actions=list(ACTIONS),
        action_freqs=list(ACTION_FREQS), background=BACKGROUND,
        steps=[dict(id=i, name=s.name, kind=KINDS[s.kind],
                    colour=COLOURS[s.colour], action=ACTIONS[s.action])
               for i, s in enumerate(world.steps)],
        categories=[dict(id=i, name=world.category_names[i], steps=list(steps),
                         groundability=world.groundability[i],
                         instructional=world.instructional[i])
                    for i, steps in enumerate(world.categories)],
        vocab_size=len(vocab.words), splits=splits)
    (out / "lab.json").write_text(json.dumps(metadata, indent=1) + "\n")


def _counted(items, bar):
    """Yields `items`, advancing the progress `bar` by one for each."""
    for item in items:
        bar.update(1)
        yield item


class _SplitCounts:
    """Accumulates one split's counts while its records stream to disk."""

    def __init__(self, num_categories: int):
        self.totals = dict(videos=0, records=0, seconds=0.0, frames=0,
                           captions=0, relevant_captions=0, segments=0)
        self.per_category = {k: [0] * num_categories
                             for k in ("videos", "captions", "relevant_captions")}

    def drain(self, results: Iterator[tuple[list[bytes], dict]], count: int,
              texts: list[str]) -> Iterator[bytes]:
        """Yields the records of the next `count` videos of `results`."""
        for _ in range(count):
            examples, info = next(results)
            texts.extend(info["texts"])
            for key, value in (("videos", 1), ("records", len(examples)),
                               ("seconds", info["seconds"]),
                               ("frames", info["frames"]),
                               ("captions", info["captions"]),
                               ("relevant_captions", info["relevant"]),
                               ("segments", info["segments"])):
                self.totals[key] += value
                if key in self.per_category:
                    self.per_category[key][info["category"]] += value
            yield from examples

    def as_dict(self) -> dict[str, Any]:
        return dict(self.totals, seconds=round(self.totals["seconds"], 3),
                    per_category=self.per_category)


# Command line ------------------------------------------------------------------

def _flag_value(text: str) -> Any:
    """Parses a flag: "a,b" -> tuple, "true"/"false" -> bool, else number.

    `LabConfig` then casts it to the field's type.
    """
    if "," in text:
        return tuple(_flag_value(t) for t in text.split(",") if t.strip())
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return float(text)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """`--preset` and one override flag per `LabConfig` field."""
    parser.add_argument("--preset", default="local", choices=PRESETS)
    for field in dataclasses.fields(LabConfig):
        parser.add_argument(f"--{field.name}", type=_flag_value,
                            default=None, help=f"override ({field.type})")


def config_from_flags(parser: argparse.ArgumentParser,
                      args: argparse.Namespace) -> LabConfig:
    """The `LabConfig` of `add_config_flags`' flags (a bad value exits naming it)."""
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(LabConfig)
                 if getattr(args, f.name) is not None}
    try:
        return lab_config(args.preset, **overrides)
    except ValueError as e:
        parser.error(str(e))


def _parser() -> argparse.ArgumentParser:
    parser = cli.argument_parser(
        prog="python -m vtlearn.data.lab",
        description="Generate the synthetic narrated-video lab.")
    parser.add_argument("--out_dir", default=None,
                        help=f"cache directory (default {default_cache_dir()})")
    parser.add_argument("--workers", type=int, default=None)
    add_config_flags(parser)
    return parser


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, LabConfig]:
    parser = _parser()
    args = parser.parse_args(argv)
    return args, config_from_flags(parser, args)


def main(argv: list[str] | None = None) -> int:
    """Generates (or finds) a lab and prints where it is and what it holds."""
    return _run(_parse(argv))


def _run(parsed: tuple[argparse.Namespace, LabConfig]) -> int:
    args, config = parsed
    out_dir = args.out_dir or default_cache_dir()
    cached = _current(fs.join(out_dir, config_hash(config)), config) is not None
    begin = time.perf_counter()
    lab = generate_lab(config, out_dir, workers=args.workers)
    seconds = time.perf_counter() - begin
    size = sum(fs.size(fs.join(lab.root, f)) for f in fs.walk_files(lab.root))
    print(f"lab ({args.preset}, seed {config.seed}) at {lab.root}")
    print(f"{'reused' if cached else 'generated in'} "
          f"{'' if cached else f'{seconds:.1f} s, '}{size / 2**20:.1f} MiB")
    for split in SPLITS:
        c = lab.metadata["splits"][split]
        relevant = c["relevant_captions"] / max(c["captions"], 1)
        print(f"  {split:5s}: {c['videos']} videos ({c['seconds'] / 60:.1f} min),"
              f" {c['records']} records in {len(c['files'])} files, "
              f"{c['captions']} captions ({relevant:.0%} relevant), "
              f"{c['segments']} steps")
    print(f"  {len(lab.metadata['categories'])} categories, "
          f"{len(lab.metadata['steps'])} steps, vocab {lab.metadata['vocab_size']}"
          f" words: {lab.vocab_path}")
    return 0


if __name__ == "__main__":
    cli.run(_parse, _run)
