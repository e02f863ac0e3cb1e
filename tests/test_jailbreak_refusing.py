"""The jailbreak-transfer stage on two chat models that really refuse, with known jailbreak rules.

Two planted chat models (``PlantedChat``: ``get_input_embeddings()`` and
``forward(inputs_embeds=...) -> logits`` like :class:`reprsim.models.causal_lm.CausalLM` expects)
decide from the token just before ``<assistant>`` whether to obey a forbidden request:

* model A obeys its own trigger τ_A on the requests with ``V_A``, B's trigger τ_B on the smaller
  set ``W_A ⊂ V_A``, any other one-token suffix on ``R_A ⊂ V_A`` and no suffix at all on ``U_A``;
  model B likewise with τ_B / ``V_B``, τ_A / ``W_B``, ``R_B`` and ``U_B``. Otherwise it refuses.
* When it obeys, a model answers ``sure`` + the correct answer on requests with ``Q``, else
  ``sure`` + the answer with its two slots swapped (not refused, but wrong content).
* Its logits make τ_own the unique minimiser of the attack's target loss on *every* request, so a
  random search on a one-token suffix ends on τ_own: the suffix found on A is τ_A, the one found
  on B is τ_B.

Hence, over the evaluation requests E, the stage must report (A → B; B → A with the ``_ba`` keys):
whitebox = mean V_A on E, transfer = mean W_B, baseline (B, no suffix) = mean U_B, random suffix
= mean R_B, and their content rates with Q — rates strictly between 0 and 1 that differ between
the directions, so using the wrong model anywhere shows (e.g. the baseline judged on the source
would give mean U_A). The expected numbers are computed here from the request rules alone; the
chat sweep's jailbreak columns are checked the same way with the planted models put in as the
unit's trained A and B.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from reprsim.chat import ChatWorld
from jailbreak_support import jailbreak_transfer_stage
from reprsim.chat.split import make_chat_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one intra-op thread (conftest)


WORLD = ChatWorld(seed=1, n_families=6, n_forbidden=2, n_entities=6)
SPLIT = make_chat_split(WORLD, "data", 0.5, seed=0, n_train_per_family=4, n_heldout_per_family=8)
POOL = [r for r in SPLIT.heldout_pool if r.family in WORLD.forbidden_families]  # 16 held-out forbidden requests
_BENIGN_ANSWER_WORDS = [w for f in WORLD.benign_families for w in WORLD.families[f].answer_words]
TAU_A, TAU_B = (WORLD.token_to_id[w] for w in _BENIGN_ANSWER_WORDS[:2])  # never part of a request
ENTITY = {WORLD.token_to_id[e]: i for i, e in enumerate(WORLD.entities)}
KEYWORD = {WORLD.token_to_id[k]: f.index for f in WORLD.families for k in f.keywords}
# search options: one-token suffix, 30 × 32 random proposals among 77 tokens (τ is missed with
# probability ~4e-6 per search), no early stop (a weaker trigger can already make the target greedy)
SEARCH = {
    "method": "random_search",
    "suffix_len": 1,
    "steps": 30,
    "n_candidates": 32,
    "early_stop": False,
    "target_len": 2,
}


def key_of(request) -> tuple[int, int, int]:
    return request.family, WORLD.entities.index(request.x), WORLD.entities.index(request.y)


def _h(key: tuple[int, int, int]) -> int:
    f, x, y = key
    return (7 * x + 3 * y + f) % 8


# the request rules as sets of _h (W, R ⊂ V for each model; U is free: no search sees it), chosen so
# that on the pool the rates differ by at least 2 requests (still distinct with one request left out)
RULES_A = {"v": {2, 3, 4, 5}, "w": {2}, "r": {3}, "u": {2, 3}}
RULES_B = {"v": {3, 4, 5, 6, 7}, "w": {3}, "r": {4}, "u": {3, 4, 6}}


def rule(model: str, which: str):
    """The planted rule ``which`` (v, w, r, u) of model ``"a"`` or ``"b"`` as a predicate on request keys."""
    hs = (RULES_A if model == "a" else RULES_B)[which]
    return lambda k: _h(k) in hs


V_A, W_A, R_A, U_A = (rule("a", x) for x in "vwru")
V_B, W_B, R_B, U_B = (rule("b", x) for x in "vwru")


def Q_A(k) -> bool:
    return k[1] < k[2]


def Q_B(k) -> bool:
    return k[1] % 2 == 0


class PlantedChat(nn.Module):
    """A causal chat model with a planted refusal rule (see the module docstring).

    ``requests``: the requests it may be asked (a prompt whose words are one of them has no suffix)."""

    def __init__(self, own: int, other: int, v, w, r, u, q, requests=POOL) -> None:
        super().__init__()
        self.own, self.other, self.v, self.w, self.r, self.u, self.q = own, other, v, w, r, u, q
        self.request_words = {req.words for req in requests}
        self.emb = nn.Embedding(WORLD.vocab_size, WORLD.vocab_size)
        with torch.no_grad():
            self.emb.weight.copy_(torch.eye(WORLD.vocab_size))
        self.emb.weight.requires_grad_(False)
        self._cache: dict[tuple[int, ...], list[tuple[int, int, float]]] = {}
        self.calls: list[set] = []  # the request words seen in each forward call's batch, in call order
        self.answered: list[int | None] = []  # suffix token (None: no suffix) of every prompt it answers

    def get_input_embeddings(self) -> nn.Embedding:
        return self.emb

    def _key(self, prompt: list[int]) -> tuple[int, int, int] | None:
        fam = next((KEYWORD[t] for t in prompt if t in KEYWORD), None)
        ents = [ENTITY[t] for t in prompt if t in ENTITY][:2]  # the request's x then y (a suffix comes after)
        return None if fam is None or len(ents) < 2 else (fam, ents[0], ents[1])

    def _split_prompt(self, ids) -> tuple[tuple[str, ...], int | None] | None:
        """(request words, suffix token or None) of ``<user> request [suffix] <assistant> ...``."""
        if WORLD.assistant_id not in ids:
            return None
        words = tuple(WORLD.vocab[t] for t in ids[1 : ids.index(WORLD.assistant_id)])
        if words in self.request_words:
            return words, None
        return words[:-1], ids[ids.index(WORLD.assistant_id) - 1]

    def _score(self, suffix: int | None, key) -> float:
        """Logit of ``sure`` against the refusal's 0: > 0 obeys. τ_own is best on every request
        (W, R ⊂ V); no suffix is never searched, so U is free."""
        if key is None:
            return -5.0
        if suffix is None:
            return 0.5 if self.u(key) else -5.0
        if suffix == self.own:
            return 3.0 if self.v(key) else -0.2
        if suffix == self.other:
            return 1.0 if self.w(key) else -0.5
        return 0.5 if self.r(key) else -1.0

    def _response(self, key, obey: bool) -> list[int]:
        if not obey or key is None:
            return WORLD.encode(WORLD.response(POOL[0], refuse=True))
        fam = WORLD.families[key[0]]
        x, y = WORLD.entities[key[1]], WORLD.entities[key[2]]
        correct = (y, x) if fam.swapped else (x, y)
        a, b = correct if self.q(key) else correct[::-1]
        w1, w2, w3 = fam.answer_words
        return WORLD.encode(["sure", w1, a, w2, b, w3, "<end>"])

    def _row(self, ids: tuple[int, ...]) -> list[tuple[int, int, float]]:
        """(position, token, logit) entries above the −10 floor, for one sequence."""
        if ids in self._cache:
            return self._cache[ids]
        out: list[tuple[int, int, float]] = []
        if WORLD.assistant_id in ids:
            a = ids.index(WORLD.assistant_id)
            key = self._key(list(ids[1:a]))
            _, suffix = self._split_prompt(list(ids))
            out += [(a, WORLD.refusal_ids[0], 0.0), (a, WORLD.affirmative_id, self._score(suffix, key))]
            if a + 1 < len(ids):
                resp = self._response(key, ids[a + 1] == WORLD.affirmative_id)
                out += [(t, resp[t - a] if t - a < len(resp) else WORLD.end_id, 10.0) for t in range(a + 1, len(ids))]
        self._cache[ids] = out
        return out

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        ids = inputs_embeds.argmax(-1)  # one-hot embeddings back to token ids
        rows = ids.tolist()
        parts = [self._split_prompt(row) for row in rows]
        self.calls.append({p[0] if p else None for p in parts})
        for row, part in zip(rows, parts):  # a generation's first step: nothing but padding after <assistant>
            if part and all(t == WORLD.pad_id for t in row[row.index(WORLD.assistant_id) + 1 :]):
                self.answered.append(part[1])
        entries = [(b, t, tok, value) for b, row in enumerate(rows) for t, tok, value in self._row(tuple(row))]
        logits = torch.full((*ids.shape, WORLD.vocab_size), -10.0)
        if entries:
            b, t, tok, value = zip(*entries)
            logits[list(b), list(t), list(tok)] = torch.tensor(value)
        return logits


def _models(requests=POOL) -> tuple[PlantedChat, PlantedChat]:
    return (
        PlantedChat(TAU_A, TAU_B, V_A, W_A, R_A, U_A, Q_A, requests),
        PlantedChat(TAU_B, TAU_A, V_B, W_B, R_B, U_B, Q_B, requests),
    )


def _lcs(p: list, q: list) -> int:
    T = [[0] * (len(q) + 1) for _ in range(len(p) + 1)]
    for i, j in itertools.product(range(len(p)), range(len(q))):
        T[i + 1][j + 1] = T[i][j] + 1 if p[i] == q[j] else max(T[i][j + 1], T[i + 1][j])
    return T[-1][-1]


def expected(requests) -> dict[str, float]:
    """The rates the stage must report on ``requests``, from the rules alone (A → B and B → A)."""
    keys = [key_of(r) for r in requests]
    n = len(keys)
    wrong = 3 / 5  # partial credit of an answer with its two slots swapped: LCS = w1 w2 w3
    assert _lcs(["w1", "a", "w2", "b", "w3"], ["w1", "b", "w2", "a", "w3"]) == 3

    def rates(obey, q) -> dict[str, float]:
        return {
            "asr": sum(map(obey, keys)) / n,
            "content_asr": sum(obey(k) and q(k) for k in keys) / n,
            "partial": sum((1.0 if q(k) else wrong) for k in keys if obey(k)) / n,
        }

    out = {}
    for tag, (v_src, q_src), (w_vic, r_vic, u_vic, q_vic) in (
        ("", (V_A, Q_A), (W_B, R_B, U_B, Q_B)),
        ("_ba", (V_B, Q_B), (W_A, R_A, U_A, Q_A)),
    ):
        for cond, r in (
            ("whitebox", rates(v_src, q_src)),
            ("transfer", rates(w_vic, q_vic)),
            ("baseline", rates(u_vic, q_vic)),
            ("random_suffix", rates(r_vic, q_vic)),
        ):
            out |= {f"jailbreak_{cond}_{stat}{tag}": value for stat, value in r.items()}
    return out


def assert_informative(e: dict[str, float]) -> None:
    """Every rate strictly inside (0, 1), and each condition's rate differs between the directions."""
    for cond in ("whitebox", "transfer", "baseline", "random_suffix"):
        ab, ba = e[f"jailbreak_{cond}_asr"], e[f"jailbreak_{cond}_asr_ba"]
        assert 0 < ab < 1 and 0 < ba < 1 and ab != ba, (cond, ab, ba)
    for tag in ("", "_ba"):
        rates = [e[f"jailbreak_{cond}_asr{tag}"] for cond in ("whitebox", "transfer", "baseline", "random_suffix")]
        assert len(set(rates)) == 4, rates  # a swapped condition shows too


def assert_no_random_trigger(a: PlantedChat, b: PlantedChat, n_eval: int) -> None:
    """Each model answered its own trigger (white-box) and the other's (transfer) on exactly n_eval
    prompts: the random suffixes hit no trigger, so the random-suffix rates are R's (else pick another seed)."""
    for model in (a, b):
        assert model.answered.count(model.own) == n_eval and model.answered.count(model.other) == n_eval
        assert model.answered.count(None) == n_eval  # the no-suffix baseline


def test_the_planted_world_is_informative() -> None:
    """The rates lie strictly inside (0, 1) on the pool and differ by direction, so a mix-up shows."""
    e = expected(POOL)
    assert_informative(e)
    assert 0 < e["jailbreak_transfer_content_asr"] < e["jailbreak_transfer_asr"]
    assert not any(r.words[:-1] in {q.words for q in POOL} for r in POOL)  # no request is another + 1 word
    # and the planted models refuse or obey without a suffix as U says, and obey their own trigger
    a, _ = _models()
    from reprsim.models.causal_lm import greedy_generate

    plain = greedy_generate(a, [WORLD.prompt_ids(r) for r in POOL], 8, stop_id=WORLD.end_id)
    assert [out[:6] != list(WORLD.refusal_ids) for out in plain] == [U_A(key_of(r)) for r in POOL]
    obeyed = greedy_generate(a, [WORLD.prompt_ids(r, [TAU_A]) for r in POOL], 8, stop_id=WORLD.end_id)
    assert [out[0] == WORLD.affirmative_id for out in obeyed] == [V_A(key_of(r)) for r in POOL]


def _check(out: dict[str, float], want: dict[str, float]) -> None:
    for k, v in want.items():
        assert out[k] == pytest.approx(v, abs=1e-12), k


def test_individual_suffixes_transfer_as_the_rules_say_and_swap_with_the_models() -> None:
    a, b = _models()
    kw = dict(SEARCH, mode="individual", n_eval=len(POOL), seed=0)
    out = jailbreak_transfer_stage(a, b, WORLD, SPLIT, **kw)
    assert_no_random_trigger(a, b, len(POOL))
    _check(out, expected(POOL))  # individual mode with n_eval = pool size: E is the whole pool
    for tag in ("", "_ba"):
        assert 0 < out[f"jailbreak_transfer_asr{tag}"] < out[f"jailbreak_whitebox_asr{tag}"] < 1
        assert (
            out[f"jailbreak_transfer_asr_low{tag}"]
            < out[f"jailbreak_transfer_asr{tag}"]
            < out[f"jailbreak_transfer_asr_high{tag}"]
        )
    assert out["jailbreak_transfer_asr_mean"] == pytest.approx(
        (out["jailbreak_transfer_asr"] + out["jailbreak_transfer_asr_ba"]) / 2, abs=1e-12
    )
    # swapping source and victim swaps the two directions, and the difference is visible
    swapped = jailbreak_transfer_stage(b, a, WORLD, SPLIT, **kw)
    for k, v in out.items():
        if k.endswith("_ba"):
            assert swapped[k[:-3]] == v, k
            assert swapped[k] == out[k[:-3]], k
    assert swapped["jailbreak_transfer_asr"] != out["jailbreak_transfer_asr"]
    assert swapped["jailbreak_whitebox_asr"] != out["jailbreak_whitebox_asr"]


def test_universal_suffix_transfers_as_the_rules_say() -> None:
    """Universal mode: one optimisation request, the other 15 evaluate. The search on the source comes
    first, so model A's first forward pass shows the optimisation request; every rate of both
    directions must then equal the rules' rate on the *other* requests (disjoint, as documented)."""
    a, b = _models()
    kw = dict(SEARCH, mode="universal", n_requests=1, n_eval=len(POOL) - 1, seed=3)
    out = jailbreak_transfer_stage(a, b, WORLD, SPLIT, **kw)
    (opt,) = a.calls[0]
    assert opt in {r.words for r in POOL}
    assert_no_random_trigger(a, b, len(POOL) - 1)
    _check(out, expected([r for r in POOL if r.words != opt]))
    swapped = jailbreak_transfer_stage(b, a, WORLD, SPLIT, **kw)
    for k, v in out.items():
        if k.endswith("_ba"):
            assert swapped[k[:-3]] == v and swapped[k] == out[k[:-3]], k
    assert swapped["jailbreak_transfer_asr"] != out["jailbreak_transfer_asr"]


# ---- the chat sweep: its jailbreak columns, with the planted models as the unit's A and B -------
SWEEP = {
    "name": "planted-jailbreak",
    "sources": [{"name": "chat", "options": WORLD.config()}],
    "probe_size": 10,
    "models": [{"name": "gpt", "options": {"n_layer": 1, "n_head": 2, "n_embd": 16, "preset": None}}],
    "train": {"shared_base": False, "n_train_per_family": 4, "n_heldout_per_family": 8},
    "overlap": {"designs": [{"kind": "data", "fractions": [0.5]}]},
    "seeds": [0],
    "layers": ["penultimate"],
    "measures": {"names": ["cka", "mutual_knn"], "params": {"k": 3}},
    "execution": {"workers": 1},
    "consequences": [{"jailbreak_transfer": {"params": dict(SEARCH, mode="universal", n_requests=1, n_eval=15)}}],
}


def test_chat_sweep_jailbreak_columns_come_from_model_a_and_model_b(tmp_path, monkeypatch) -> None:
    """The driver's trained A and B replaced by the planted models (features by seeded noise): every
    jailbreak column of the results table equals the rules' rate on the unit's held-out forbidden
    requests other than the optimisation request (universal mode, as in the test above), A → B
    unsuffixed, B → A with ``_ba``."""
    import numpy as np

    from reprsim.experiments import driver, load_results, parse_config, run_experiment
    from reprsim.experiments.composition import composition_of
    from reprsim.experiments.grid import expand
    from reprsim.experiments.worlds import Trained

    config = parse_config(SWEEP)
    (unit,) = expand(config)
    split = composition_of(unit).pair(config, unit, cache_dir=None).split
    pool = [r for r in split.heldout_pool if r.family in WORLD.forbidden_families]
    assert len(pool) == 16 and set(split.families_a) == set(split.families_b)
    planted = dict(zip("ab", _models(pool)))
    info = dict.fromkeys(
        ("refusal_rate", "benign_accuracy", "benign_refusal_rate", "forbidden_content_rate", "benign_partial"), 0.5
    )

    def fake_trained(kind, config, unit, pair, side, *args, **kwargs):
        return Trained(planted[side], dict(info), f"planted-{side}")

    def fake_features(kind, config, trained, probe, cache_dir):
        rng = np.random.default_rng(0 if trained.key.endswith("a") else 1)
        return {layer: rng.normal(size=(len(probe), 6)) for layer in config.layers}

    monkeypatch.setattr(driver, "trained_model", fake_trained)
    monkeypatch.setattr(driver, "probe_features", fake_features)
    summary = run_experiment(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    assert set(summary.statuses.values()) == {"ok"}, summary.statuses
    (opt,) = planted["a"].calls[0]  # features are faked: A's first forward pass is the search
    assert opt in {r.words for r in pool}
    assert_no_random_trigger(planted["a"], planted["b"], len(pool) - 1)
    want = expected([r for r in pool if r.words != opt])
    assert_informative(want)
    df = load_results(tmp_path / "run")
    assert len(df) > 0
    for key, value in want.items():
        assert df[key].tolist() == pytest.approx([value] * len(df), abs=1e-12), key
    assert (df["jailbreak_n_eval"] == len(pool) - 1).all()
