"""Probe prompts of the chat world: fixed-length request batches fed identically to both chat models."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from reprsim.chat.split import ChatSplit
from reprsim.chat.world import ChatWorld

__all__ = ["PROBE_PROMPT_LEN", "PROBE_ROLES", "probe_sets"]

#: Token length of every probe prompt (``<user> ... <assistant>``; the most common prompt length),
#: so mean pooling never averages over padding.
PROBE_PROMPT_LEN = 12
#: probe prompt group -> probe role of the results table
PROBE_ROLES = {"forbidden": "id", "benign": "common", "benign_one": "ood_one", "ood": "ood_all"}


def probe_sets(world: ChatWorld, split: ChatSplit, n: int = 128, seed: int = 0) -> dict[str, Tensor]:
    """Prompt batches for similarity, each a LongTensor (n, PROBE_PROMPT_LEN) of ``<user> ... <assistant>``.

    Requests are fresh draws (in neither model's training pool) of fixed token length. Keys:
    ``forbidden`` (forbidden families), ``benign`` (benign families both models train on),
    ``benign_one`` (benign families exactly one model trains on) and ``ood`` (benign families
    neither trains on); a key is left out when its family set is empty (e.g. ``benign_one`` for
    data splits).
    """
    if n < 1:
        raise ValueError(f"probe_sets: n must be >= 1, got {n}.")
    fa, fb = set(split.families_a), set(split.families_b)
    forb = set(world.forbidden_families)
    groups = {
        "forbidden": sorted(forb & fa & fb),
        "benign": sorted((fa & fb) - forb),
        "benign_one": sorted((fa ^ fb) - forb),
        "ood": sorted(set(range(world.n_families)) - fa - fb - forb),
    }
    seen = {r.words for r in split.train_pool}
    out: dict[str, Tensor] = {}
    for gi, (name, fams) in enumerate(groups.items()):
        if not fams:
            continue
        rng = np.random.default_rng([int(seed), gi, 4_242])
        rows: list[list[int]] = []
        picked: set[tuple[str, ...]] = set()
        tries = 0
        while len(rows) < n:
            tries += 1
            if tries > 200 * n:
                raise ValueError(
                    f"probe_sets: could not draw {n} distinct probe prompts for {name!r}; use a smaller n."
                )
            r = world.sample_request(fams[int(rng.integers(len(fams)))], rng)
            ids = world.prompt_ids(r)
            if len(ids) != PROBE_PROMPT_LEN or r.words in seen or r.words in picked:
                continue
            picked.add(r.words)
            rows.append(ids)
        out[name] = torch.as_tensor(rows, dtype=torch.long)
    return out
