"""The one option set of the jailbreak transfer stage (``consequences: [{jailbreak_transfer: {params: ...}}]``).

:class:`JailbreakOptions` is typed (pydantic) and checked when the config loads; each bad value is
one error naming its key. Groups:

* suffix search: ``method`` (``random_search`` | ``gcg``), ``steps``, ``suffix_len``, ``target_len``
  (target tokens the search raises), ``early_stop``, ``max_rows``; random search: ``n_candidates``,
  ``n_tokens_change``, ``n_restarts``; GCG: ``topk``, ``batch_size``, ``progressive``.
* behaviours: ``mode`` (``universal``: one suffix optimised on ``n_train`` behaviours and evaluated
  on ``n_eval`` others; ``individual``: one suffix per evaluated behaviour, ``n_train`` unused),
  ``n_eval`` (null: every behaviour not trained on), ``behaviours`` (an AdvBench CSV, text sources).
* prompt (Hugging Face tokenizers only): ``template`` (``paper`` | ``plain`` | a string with
  ``{goal}``), ``chat_template``, ``system_prompt``.
* decoding: ``decoding`` (``greedy`` | ``sampled``), ``n_samples`` (greedy: 1), ``temperature``,
  ``top_p`` (sampled only), ``max_new_tokens``, ``batch_rows``.
* judges: ``judges``, a list of ``exact`` | ``refusal`` | ``{kind: hf, type: chat | classifier, ...}``
  (:mod:`reprsim.attacks.judges`).
* ``streams``: how the search and control seeds derive from the unit's attack seed: ``hashed``
  (``SeedSequence`` of seed, direction, purpose, behaviour: the two directions draw differently) or
  ``offset`` (the older chat stage's: the search seed itself, ``+ i`` per individual behaviour, in
  both directions, and ``seed + 77`` for the random suffixes).

Options left unset take the defaults of the prompt format (:data:`FORMAT_DEFAULTS`): the chat
world's zoo LMs (``world``: greedy, exact judge, offset streams, 64 evaluated requests, the older
chat stage's defaults), a Hugging Face LM on the chat world (``hf_world``) or on text (``hf_text``),
so that a config reproduces what the older stage of its kind computed.

Older key names are accepted with one logged deprecation note: ``n_requests`` (the chat stage) →
``n_train``, ``judge: X`` → ``judges: [X]``, ``n_behaviours: N`` (the llm stage: behaviours drawn
in all) → ``n_eval: N - n_train`` in universal mode, ``N`` in individual mode.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = ["FORMAT_DEFAULTS", "JailbreakOptions", "format_options_error", "parse_options"]

log = logging.getLogger(__name__)
_NOTED: set[str] = set()  # deprecation notes already logged

_Pos = Annotated[StrictInt, Field(ge=1)]
#: keys that only one suffix search takes
_METHOD_KEYS = {
    "random_search": ("n_candidates", "n_tokens_change", "n_restarts"),
    "gcg": ("topk", "batch_size", "progressive"),
}
_SAMPLED_KEYS = ("temperature", "top_p")
_TOKENIZER_KEYS = ("template", "chat_template", "system_prompt", "behaviours")  # not for the world's format
#: older key -> new key (n_behaviours is converted in :meth:`JailbreakOptions.resolve`)
_RENAMED = {"n_requests": "n_train"}

#: defaults of the options a config leaves unset, per prompt format
FORMAT_DEFAULTS: dict[str, dict[str, Any]] = {
    "world": {
        "decoding": "greedy",
        "judges": ["exact"],
        "streams": "offset",
        "mode": "universal",
        "n_eval": 64,
        "suffix_len": 10,
        "target_len": 2,
    },
    "hf_world": {
        "decoding": "sampled",
        "judges": ["exact"],
        "streams": "hashed",
        "mode": "universal",
        "template": "plain",
        "suffix_len": 10,
        "target_len": 2,
        "max_new_tokens": 8,
    },
    "hf_text": {
        "decoding": "sampled",
        "judges": ["refusal"],
        "streams": "hashed",
        "mode": "individual",
        "template": "paper",
        "suffix_len": 25,
        "target_len": 1,
        "max_new_tokens": 64,
    },
}


class JailbreakOptions(BaseModel):
    """Options of the jailbreak transfer stage (see the module docstring); unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # suffix search
    method: Literal["random_search", "gcg"] = "random_search"
    steps: Annotated[StrictInt, Field(ge=0)] = 100
    suffix_len: _Pos = 25
    target_len: _Pos = 1
    n_candidates: _Pos = 1
    n_tokens_change: _Pos = 4
    n_restarts: _Pos = 1
    topk: _Pos = 256
    batch_size: _Pos = 512
    progressive: StrictBool = True
    early_stop: StrictBool = True
    max_rows: _Pos = 2048
    # behaviours
    mode: Literal["universal", "individual"] = "individual"
    n_train: _Pos = 8
    n_eval: _Pos | None = None
    n_behaviours: _Pos | None = Field(None, description="deprecated: use n_eval")
    behaviours: str | None = None
    # prompt (Hugging Face tokenizers)
    template: str = "paper"
    chat_template: StrictBool = True
    system_prompt: str | None = None
    # decoding
    decoding: Literal["greedy", "sampled"] = "sampled"
    n_samples: _Pos | None = None  # greedy: 1, sampled: 4
    temperature: Annotated[float, Field(gt=0)] | None = None  # sampled: 0.7
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None  # sampled: 0.9
    max_new_tokens: _Pos | None = None  # the chat world: its answer length + 1
    batch_rows: _Pos = 256
    # judges, seeds, display
    # each a name or a mapping; checked by reprsim.attacks.judges.judge_spec (one message per bad judge)
    judges: list[Any] = Field(default_factory=lambda: ["refusal"], min_length=1)
    streams: Literal["hashed", "offset"] = "hashed"
    progress: StrictBool = False

    @model_validator(mode="before")
    @classmethod
    def _older_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        notes = []
        for old, new in [*_RENAMED.items(), ("judge", "judges")]:
            if old not in data:
                continue
            if new in data:
                raise ValueError(f"give {new} (the current key) or the older {old}, not both")
            value = data.pop(old)
            data[new] = [value] if old == "judge" else value
            notes.append(f"{old} -> {new}")
        if "n_behaviours" in data:
            if "n_eval" in data:
                raise ValueError("give n_eval (the current key) or the older n_behaviours, not both")
            notes.append("n_behaviours: N -> n_eval: N - n_train (universal) or N (individual)")
        note = "; ".join(notes)
        if notes and (info.context or {}).get("warn", True) and note not in _NOTED:
            _NOTED.add(note)  # a config is parsed more than once (overrides, preflight): one note per process
            log.warning("consequences.jailbreak_transfer: deprecated option name(s): %s", note)
        return data

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        if v not in ("paper", "plain") and "{goal}" not in v:
            raise ValueError(f"template must be paper, plain or a string containing {{goal}}, got {v[:60]!r}")
        return v

    @field_validator("judges")
    @classmethod
    def _judges(cls, v: list[Any]) -> list[Any]:
        from reprsim.attacks.judges import judge_specs_of

        judge_specs_of(v)  # ValueError naming the bad judge key
        return v

    @model_validator(mode="after")
    def _combinations(self) -> JailbreakOptions:
        given = self.model_fields_set
        other = [k for m, keys in _METHOD_KEYS.items() if m != self.method for k in keys if k in given]
        if other:
            raise ValueError(
                f"{other} apply to another suffix search than method {self.method}; drop them or change method"
            )
        if self.decoding == "greedy":
            sampled = [k for k in _SAMPLED_KEYS if k in given]
            if sampled:
                raise ValueError(f"{sampled} apply to decoding: sampled only; drop them or set decoding: sampled")
            if self.n_samples not in (None, 1):
                raise ValueError(
                    f"decoding: greedy gives one answer per prompt; n_samples must be 1, got {self.n_samples}"
                )
        return self

    def resolve(self, fmt: str, **extra: Any) -> JailbreakOptions:
        """These options with the unset ones taken from :data:`FORMAT_DEFAULTS` ``[fmt]`` (then ``extra``),
        the deprecated ``n_behaviours`` converted to ``n_eval`` and the decoding defaults filled in."""
        if fmt not in FORMAT_DEFAULTS:
            raise ValueError(f"unknown prompt format {fmt!r}; known: {sorted(FORMAT_DEFAULTS)}")
        given = {k: getattr(self, k) for k in self.model_fields_set}
        foreign = sorted(set(_TOKENIZER_KEYS) & set(given)) if fmt == "world" else []
        if foreign:
            raise ValueError(
                f"consequences.jailbreak_transfer: {foreign} apply to Hugging Face tokenizers and text "
                "sources; the chat world's zoo LMs use the world's own prompt and requests"
            )
        merged = FORMAT_DEFAULTS[fmt] | extra | given
        sampled = merged.get("decoding", "sampled") == "sampled"
        decoding = {"n_samples": 4, "temperature": 0.7, "top_p": 0.9} if sampled else {"n_samples": 1}
        merged |= {k: v for k, v in decoding.items() if merged.get(k) is None}
        n_all = merged.pop("n_behaviours", None)
        if n_all is not None:
            n_eval = n_all - (merged.get("n_train", 8) if merged.get("mode") == "universal" else 0)
            if n_eval < 1:
                raise ValueError(
                    f"n_behaviours {n_all} leaves no behaviour to evaluate after the n_train="
                    f"{merged.get('n_train', 8)} the universal suffix is optimised on; raise it"
                )
            merged["n_eval"] = n_eval
        return JailbreakOptions.model_validate(merged, context={"warn": False})


def format_options_error(exc: ValidationError, where: str = "consequences.jailbreak_transfer") -> str:
    """One line per bad option: ``where.key: message``."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown option (check its spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{'.'.join(p for p in (where, key) if p) or 'params'}: {msg.removeprefix('Value error, ')}")
    return "; ".join(lines)


def parse_options(
    params: dict[str, Any] | JailbreakOptions, *, warn: bool = True, where: str = "consequences.jailbreak_transfer"
) -> JailbreakOptions:
    """``params`` (a config's ``consequences[].params``) as :class:`JailbreakOptions`; ValueError naming
    each bad key (after ``where``)."""
    if isinstance(params, JailbreakOptions):
        return params
    if not isinstance(params, dict):
        raise ValueError(f"consequences.jailbreak_transfer.params must be a mapping of options, got {params!r}")
    try:
        return JailbreakOptions.model_validate(params, context={"warn": warn})
    except ValidationError as exc:
        raise ValueError(format_options_error(exc, where)) from None
