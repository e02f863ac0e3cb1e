"""Experiment configuration: the YAML schema, validated with pydantic before any work starts.

A config names the data source(s) and probe sets, the model(s) and training recipe, the overlap
designs, the seeds, the layers, the similarity measures and the consequence stages. Unknown keys,
wrong types and impossible combinations are rejected with the key path and a hint
(:class:`reprsim.errors.ConfigError`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reprsim.errors import ConfigError

OverlapKind = Literal["data", "task", "combined", "attribute"]

# Sources whose units train language models (their own unit pipelines) instead of image classifiers.
LM_SOURCES = frozenset({"chat", "text"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    """A data source registered in :func:`reprsim.data.load`, with its loading options."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict, description="options for the training split")
    test_options: dict[str, Any] = Field(default_factory=dict, description="options for the test split")
    label: str = Field("label", description="label column the models are trained on")


class ProbeSpec(_Strict):
    """An extra probe set (typically out-of-distribution), reshaped to the training inputs' shape."""

    name: str
    source: str
    split: Literal["train", "test"] = "test"
    options: dict[str, Any] = Field(default_factory=dict)


class ModelSpec(_Strict):
    """A model of :func:`reprsim.models.build` and its keyword options."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


def _check_fractions(values: list[float]) -> list[float]:
    if not values:
        raise ValueError("give at least one fraction")
    for v in values:
        if not (0.0 <= v <= 1.0) or math.isnan(v):
            raise ValueError(f"fraction {v} is outside [0, 1]; overlap fractions are shares between 0 and 1")
    if len(set(values)) != len(values):
        raise ValueError(f"fractions {values} contain duplicates")
    return values


Fractions = Annotated[list[float], Field(min_length=1), AfterValidator(_check_fractions)]


class DataDesign(_Strict):
    """Data overlap: a fraction of identical examples shared per class; both models see every class."""

    kind: Literal["data"]
    fractions: Fractions


class TaskDesign(_Strict):
    """Task (class) overlap: a fraction of the classes shared; the images of a class go with it."""

    kind: Literal["task"]
    fractions: Fractions


class CombinedDesign(_Strict):
    """The data × task grid: shared classes carry the given data overlap."""

    kind: Literal["combined"]
    data_fractions: Fractions
    task_fractions: Fractions


class AttributeDesign(_Strict):
    """Task-only overlap on identical inputs: tasks built from attribute columns sharing 0, 1 or all attributes.

    ``levels`` are overlap levels in {0, 0.5, 1} (the paper's ColorShapeDigit P1/P2/P3).
    """

    kind: Literal["attribute"]
    attributes: list[str] = Field(default_factory=lambda: ["shape", "digit", "color"], min_length=3, max_length=3)
    levels: Fractions = Field(default_factory=lambda: [0.0, 0.5, 1.0])

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        bad = [x for x in v if x not in (0.0, 0.5, 1.0)]
        if bad:
            raise ValueError(f"attribute levels must be among 0, 0.5, 1 (got {bad})")
        return v


Design = Annotated[Union[DataDesign, TaskDesign, CombinedDesign, AttributeDesign], Field(discriminator="kind")]


class OverlapSpec(_Strict):
    designs: list[Design] = Field(min_length=1)
    mode: Literal["constrained", "unconstrained"] = "constrained"


class PrepareSpec(_Strict):
    normalize: Literal["l2"] | None = "l2"
    clip_quantile: float | None = Field(0.95, gt=0.0, le=1.0)


class MeasureSpec(_Strict):
    """Which similarity measures to compute, their parameters and the feature preparation."""

    names: list[str] | Literal["all", "paper"] = "paper"
    params: dict[str, Any] = Field(default_factory=lambda: {"k": 10})
    prepare: PrepareSpec = Field(default_factory=PrepareSpec)
    permutations: int = Field(0, ge=0, description="permutation-test size per pair (0 = off)")

    def resolved_names(self) -> list[str]:
        from reprsim import metrics

        if self.names == "all":
            return list(metrics.MEASURES)
        if self.names == "paper":
            return list(metrics.PAPER_MEASURES)
        return list(self.names)


class AttackTransferSpec(_Strict):
    """Adversarial transfer stage (:func:`reprsim.attacks.transfer.attack_transfer_stage`)."""

    kind: Literal["attack_transfer"] = "attack_transfer"
    attack: Literal["mi_fgsm", "fgsm", "pgd"] = "mi_fgsm"
    eps_data: float = Field(1 / 255, ge=0.0, le=1.0, description="ε (pixel scale) for data-overlap pairs")
    eps_task: float = Field(2 / 255, ge=0.0, le=1.0, description="ε for task/combined/attribute pairs")
    steps: int = Field(3, ge=1)
    n: int = Field(500, ge=1, description="size of the fixed, seeded probe subset")
    params: dict[str, Any] = Field(default_factory=dict)


class JailbreakTransferSpec(_Strict):
    """Jailbreak transfer stage (:func:`reprsim.attacks.jailbreak.jailbreak_transfer_stage`)."""

    kind: Literal["jailbreak_transfer"] = "jailbreak_transfer"
    params: dict[str, Any] = Field(default_factory=dict)


class ExecutionSpec(_Strict):
    executor: Literal["local", "ray"] = "local"
    workers: int = Field(1, ge=1, description="units run at once (local: worker processes)")
    threads_per_unit: int = Field(1, ge=1, description="torch threads inside each unit")
    address: str | None = Field(None, description="Ray cluster address (e.g. 'auto'); None starts a local instance")
    gpus_per_unit: float = Field(0.0, ge=0.0)


class ExperimentConfig(_Strict):
    """A whole causal experiment: the grid sources × models × designs × fractions × seeds."""

    name: str = "experiment"
    sources: list[SourceSpec] = Field(min_length=1)
    probes: list[ProbeSpec] = Field(default_factory=list)
    probe_size: int = Field(2000, ge=10, description="in-distribution probe inputs per set (seeded subsample)")
    models: list[ModelSpec] = Field(min_length=1)
    train: dict[str, Any] = Field(default_factory=dict, description="reprsim.train.TrainConfig fields")
    overlap: OverlapSpec
    seeds: list[int] = Field(min_length=1)
    layers: list[str] = Field(default_factory=lambda: ["penultimate"], min_length=1)
    measures: MeasureSpec = Field(default_factory=MeasureSpec)
    consequences: list[AttackTransferSpec | JailbreakTransferSpec] = Field(default_factory=list)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)

    @field_validator("consequences", mode="before")
    @classmethod
    def _consequence_shorthand(cls, v: Any) -> Any:
        # Accept `consequences: [attack_transfer]` and `[{attack_transfer: {...}}]` besides full mappings.
        out = []
        for item in v or []:
            if isinstance(item, str):
                item = {"kind": item}
            elif isinstance(item, dict) and len(item) == 1 and "kind" not in item:
                (kind, params), = item.items()
                item = {"kind": kind, **(params or {})}
            if isinstance(item, dict) and item.get("kind") == "jailbreak_transfer":
                # the stage's options may be written inline, next to kind
                inline = {k: v for k, v in item.items() if k not in ("kind", "params")}
                item = {"kind": "jailbreak_transfer", "params": {**item.get("params", {}), **inline}}
            out.append(item)
        return out

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds {v} contain duplicates")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentConfig":
        lm = [s.name for s in self.sources if s.name in LM_SOURCES]
        if lm and len(lm) != len(self.sources):
            raise ValueError(f"sources: the language-model sources {sorted(LM_SOURCES)} cannot be mixed with image sources")
        kinds = {c.kind for c in self.consequences}
        if "jailbreak_transfer" in kinds and lm != ["chat"] * len(self.sources):
            raise ValueError("consequences: jailbreak_transfer needs the 'chat' source (chat-model pairs)")
        if "attack_transfer" in kinds and lm:
            raise ValueError(f"consequences: attack_transfer needs an image source, not {lm[0]!r}")
        if lm:
            bad = [d.kind for d in self.overlap.designs if d.kind not in ("data", "task")]
            if bad:
                raise ValueError(f"overlap.designs: the {lm[0]} source supports kinds 'data' and 'task', not {bad}")
        return self

    def consequence(self, kind: str) -> AttackTransferSpec | JailbreakTransferSpec | None:
        return next((c for c in self.consequences if c.kind == kind), None)


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "<top level>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and indentation; see `reprsim config show`)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{path}: {msg}")
    return "invalid config: " + "; ".join(lines)


def parse_config(data: dict[str, Any]) -> ExperimentConfig:
    """Validate a config mapping; raise :class:`ConfigError` naming every bad key path."""
    if not isinstance(data, dict):
        raise ConfigError("invalid config: the top level must be a mapping of keys (name, sources, models, ...)")
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None
    _check_against_registries(config)
    return config


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(data)


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config as YAML (every default filled in)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _check_against_registries(config: ExperimentConfig) -> None:
    """Cross-check names against the measure, model and training registries (fail before any work)."""
    from reprsim import metrics

    names = config.measures.resolved_names()
    unknown = [n for n in names if n not in metrics.MEASURES]
    if unknown:
        raise ConfigError(f"measures.names: unknown measure(s) {unknown}; valid: {sorted(metrics.MEASURES)}")
    accepted = {param for name in names for param in metrics.MEASURES[name].params}
    stray = sorted(set(config.measures.params) - accepted)
    if stray:
        raise ConfigError(f"measures.params: {stray} is taken by none of the selected measures; "
                          f"they accept {sorted(accepted)}")
    if config.sources[0].name != "chat":  # chat models are built by reprsim.chat from their train config
        from reprsim import models
        from reprsim.train import TrainConfig

        for i, spec in enumerate(config.models):
            if spec.name not in models.available():
                raise ConfigError(f"models.{i}.name: unknown model {spec.name!r}; valid: {models.available()}")
        try:
            TrainConfig.from_dict(config.train)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"train: {exc}") from None
