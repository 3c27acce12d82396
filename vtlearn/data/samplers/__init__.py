"""Training samplers: one module each, chosen by `config.data.sampler`.

A sampler turns one parsed chunk record into one training sample and
declares what that sample looks like, so the pipeline, the trainer and
`vtlearn.load` need no knowledge of any particular sampler. Built in:
"clip" (MIL-NCE's anchor clip with K nearest captions), "sequence"
(VT-TWINS's n consecutive clip-caption pairs), "segments" (Hessel et
al.'s random fixed-length segments with the ASR spoken during them) and
"merged" (MCN's captions merged with their neighbours to at least 10 s).
A new sampler is a module defining `Sampler`, a subclass of
`vtlearn.data.samplers.base.Sampler`.
"""

from __future__ import annotations

import ml_collections

from vtlearn.registry import load_plugin


def get_sampler(cfg: ml_collections.ConfigDict):
    """The `Sampler` named by `cfg.sampler`, built for data config `cfg`."""
    return load_plugin("vtlearn.data.samplers", cfg.sampler, "Sampler",
                       "config.data.sampler")(cfg)
