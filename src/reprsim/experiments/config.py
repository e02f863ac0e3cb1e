"""Experiment configuration: the YAML schema, validated with pydantic before any work starts.

A config names the data source(s) and probe sets, the model(s) and training recipe, the overlap
designs, the seeds, the layers, the similarity measures and the consequence stages. Unknown keys,
wrong types and impossible combinations are rejected with the key path and a hint
(:class:`reprsim.errors.ConfigError`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from reprsim.analysis.spec import AnalysisSpec
from reprsim.errors import ConfigError

if TYPE_CHECKING:  # imported where used: reprsim.attacks brings torch
    from reprsim.attacks.jailbreak_options import JailbreakOptions

OverlapKind = Literal["data", "task", "combined", "attribute", "factorial"]


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
    """A model of :func:`reprsim.models.build` and its keyword options, or a local Hugging Face model.

    ``hf: /path/to/model`` names a ``save_pretrained`` folder: a causal LM is fine-tuned by the
    ``llm`` kind (see :mod:`reprsim.models.hf_spec`; ``dtype`` is the weights' dtype and ``lora`` the LoRA
    options, ``false``: full fine-tuning), an image classifier or vision encoder by the ``image``
    kind, with a new head for the task (``input_size``: the side images are resized to; default the
    model config's ``image_size``). ``name`` defaults to the folder's name (``demo`` for the
    built-in demo base). A zoo model may start from ``checkpoint`` (every weight but the head).
    ``train`` overrides keys of the top-level ``train`` for this model only (e.g. SGD for ResNets,
    AdamW for ViTs).
    """

    name: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    hf: str | None = Field(None, description="a local Hugging Face model directory, or 'demo' (built offline)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    lora: dict[str, Any] | bool | None = Field(None, description="hf models: LoRA options; false = full fine-tuning")
    checkpoint: str | None = Field(None, description="zoo models: weights to start from (every tensor but the head)")
    input_size: StrictInt | None = Field(None, gt=0, description="hf image models: resize images to this side")
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of the top-level train for this model")

    @model_validator(mode="before")
    @classmethod
    def _hf_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("hf") is not None and not data.get("name"):
            from reprsim.models.hf_spec import hf_short_name

            data = {**data, "name": hf_short_name(str(data["hf"]))}
        return data

    @model_validator(mode="after")
    def _hf_entry(self) -> ModelSpec:
        if self.hf is None:
            if not self.name:
                raise ValueError("give a zoo model (name: gpt) or a local Hugging Face directory (hf: /path/to/model)")
            if self.lora is not None or self.dtype != "auto":
                raise ValueError(f"dtype and lora apply to Hugging Face models (hf: ...) only, not to {self.name!r}")
            if self.input_size is not None:
                raise ValueError(
                    f"input_size applies to Hugging Face image models (hf: ...) only; zoo model "
                    f"{self.name!r} is built for the data's size"
                )
        elif self.checkpoint is not None:
            raise ValueError(f"checkpoint applies to zoo models; hf: {self.hf} starts from its own weights")
        # whether hf: names a model folder is checked by the kind's preflight (image or llm), not here, so that a
        # config pointing at a folder of another machine can still be shown and edited
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if self.hf is None:  # zoo entries dump as before (their unit ids and cache keys do not change)
            for key in ("hf", "dtype", "lora"):
                data.pop(key, None)
        for key in ("checkpoint", "input_size", "train"):  # likewise for entries that do not use these
            if not data.get(key):
                data.pop(key, None)
        return data


def _strict_fraction(value: Any) -> Any:
    # Strict numbers: YAML `"0.5"` (a string) or `true` (a boolean) is a mistake, never coerced.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"fraction {value!r} must be a number such as 0.5 (written without quotes), "  # noqa: TRY004 - pydantic reports ValueError
            f"not a {type(value).__name__}"
        )
    return value


def _check_fractions(values: list[float]) -> list[float]:
    if not values:
        raise ValueError("give at least one fraction")
    for v in values:
        if not (0.0 <= v <= 1.0) or math.isnan(v):
            raise ValueError(f"fraction {v} is outside [0, 1]; overlap fractions are shares between 0 and 1")
    if len(set(values)) != len(values):
        raise ValueError(f"fractions {values} contain duplicates")
    return values


Fraction = Annotated[float, BeforeValidator(_strict_fraction)]
Fractions = Annotated[list[Fraction], Field(min_length=1), AfterValidator(_check_fractions)]


class _DesignBase(_Strict):
    sources: list[str] | None = Field(
        None, description="names of the sources this design runs on (default: every source of the config)"
    )
    models: list[str] | None = Field(
        None, description="names of the models this design trains (default: every model of the config)"
    )

    def applies_to(self, source: str, model: str | None = None) -> bool:
        """Whether this design runs on ``source`` (and, when given, trains ``model``)."""
        return (self.sources is None or source in self.sources) and (
            model is None or self.models is None or model in self.models
        )

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        return _drop_unset_models(handler(self))

    @model_validator(mode="before")
    @classmethod
    def _data_only_arms(cls, data: Any) -> Any:
        # a clear message instead of "unknown key": these arms exist for data-overlap designs only
        if isinstance(data, dict) and data.get("kind") != "data":
            stray = [key for key in DATA_ARMS if key in data]
            if stray:
                raise ValueError(
                    f"{stray} apply to data-overlap designs (kind: data) only, not to kind "
                    f"{data.get('kind')!r}; move them to a kind: data design or drop them"
                )
        return data


def _drop_unset_models(data: dict[str, Any]) -> dict[str, Any]:
    # designs without a models list dump as before (run folders of older configs resume)
    if data.get("models") is None:
        data.pop("models", None)
    return data


#: the arms a data-overlap design crosses with its fractions, and their ordinary (default) values
DATA_ARMS: dict[str, Any] = {"align": 0.0, "init": "independent"}


def _strict_dose(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"align dose {value!r} must be a number such as 2.0 (written without quotes), "  # noqa: TRY004 - pydantic reports ValueError
            f"not a {type(value).__name__}"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"align dose {value} must be a finite number >= 0 (0 = no alignment loss)")
    return float(value)


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError(f"{values} contain duplicates")
    return values


class DataDesign(_DesignBase):
    """Data overlap: a fraction of identical examples shared per class; both models see every class.

    Two optional arms are crossed with the fractions (the grid is fractions × ``align`` × ``init``),
    each a second cause of similarity at a fixed data overlap; they change model B only:

    * ``align``: doses λ ≥ 0 (default ``[0]``). B is trained with its usual loss plus
      λ · (1 − linear CKA(B's penultimate features, A's)) on each training batch, with the trained
      model A frozen (eval mode, no gradient, the same batch inputs); λ = 0 is ordinary training.
    * ``init``: ``independent`` (default: B draws its own initial weights) and/or ``shared`` (B
      starts from A's initial weights).
    """

    kind: Literal["data"]
    fractions: Fractions
    align: Annotated[
        list[Annotated[float, BeforeValidator(_strict_dose)]], Field(min_length=1), AfterValidator(_unique)
    ] = Field(default_factory=lambda: [0.0])
    init: Annotated[list[Literal["independent", "shared"]], Field(min_length=1), AfterValidator(_unique)] = Field(
        default_factory=lambda: ["independent"]
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        data = _drop_unset_models(handler(self))
        for key, ordinary in DATA_ARMS.items():  # designs without the arms dump as before
            if data.get(key) == [ordinary]:
                data.pop(key)
        return data


class TaskDesign(_DesignBase):
    """Task (class) overlap: a fraction of the classes shared.

    ``images`` (image sources; ignored by text and chat sources, whose task overlap shares domains
    or families): ``disjoint`` (default, pure task overlap) trains A and B on disjoint halves of
    every shared class, so no fraction shares an image; ``shared`` is the paper's vertical split, in
    which a shared class brings all of its images to both models (task + data overlap).
    """

    kind: Literal["task"]
    fractions: Fractions
    images: Literal["disjoint", "shared"] = "disjoint"


class CombinedDesign(_DesignBase):
    """The data × task grid: shared classes carry the given data overlap."""

    kind: Literal["combined"]
    data_fractions: Fractions
    task_fractions: Fractions


class AttributeDesign(_DesignBase):
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


class FactorialDesign(_DesignBase):
    """Combined overlap as a 2 × 2 factorial on identical-input attribute tasks (colorshapes).

    Images {disjoint, shared} (``data_fraction`` 0 / 1) × task {``other_task``, ``task``}
    (``task_fraction`` 0 / 1): model A always learns ``task`` on the same images; model B learns
    ``task`` or ``other_task`` on A's images or on as many other images. The estimand is the
    interaction y11 − y10 − y01 + y00 per seed (:mod:`reprsim.analysis`).
    """

    kind: Literal["factorial"]
    task: str = "shape"
    other_task: str = "color"


Design = Annotated[
    DataDesign | TaskDesign | CombinedDesign | AttributeDesign | FactorialDesign, Field(discriminator="kind")
]


class OverlapSpec(_Strict):
    designs: list[Design] = Field(min_length=1)
    mode: Literal["constrained", "unconstrained"] = "constrained"


class PrepareSpec(_Strict):
    """Feature preparation (default: the paper's rule, clip 0.95 + L2); also written as a rule name,
    ``prepare: paper | l2 | none`` (:data:`reprsim.metrics.prepare.RULES`)."""

    normalize: Literal["l2"] | None = "l2"
    clip_quantile: StrictFloat | None = Field(0.95, gt=0.0, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _rule_name(cls, data: Any) -> Any:
        from reprsim.metrics.prepare import RULES

        if isinstance(data, str) and data in RULES:
            normalize, q, _ = RULES[data]
            return {"normalize": normalize, "clip_quantile": q}
        return data


class PairedSpec(_Strict):
    """``measures.paired``: the paired stage after the sweep (:mod:`reprsim.experiments.paired`): within
    each seed, the pair at the highest fraction vs the pair at the lowest, on the probe sets whose inputs
    are identical at both, with a paired bootstrap over those inputs. ``paired: 0`` (the default) is off."""

    n_boot: StrictInt = Field(200, ge=2, le=100_000, description="bootstrap resamples of the shared inputs")
    level: StrictFloat = Field(0.95, gt=0.0, lt=1.0, description="level of each within-seed interval")
    measures: list[str] | None = Field(
        None, min_length=1, description="the measures compared (default: the analysis spec's primary measures)"
    )

    @model_validator(mode="before")
    @classmethod
    def _off(cls, data: Any) -> Any:
        if isinstance(data, dict) or data is None:
            return data
        raise ValueError(
            f"measures.paired must be 0 (off) or a mapping such as {{n_boot: 200, level: 0.95}}; got {data!r}"
        )

    @field_validator("measures")
    @classmethod
    def _measures(cls, v: list[str] | None) -> list[str] | None:
        return _known_measures(v, "measures.paired")


def _known_measures(names: list[str] | None, where: str) -> list[str] | None:
    """``names`` when each is a measure, else a ValueError naming the unknown ones and ``where``."""
    from reprsim import metrics

    unknown = [name for name in names or [] if name not in metrics.MEASURES]
    if unknown:
        raise ValueError(f"unknown measure(s) {unknown} in {where}; valid: {sorted(metrics.MEASURES)}")
    return names


def _paired_off(value: Any) -> Any:
    """``paired: 0`` / ``false`` / ``null``: the paired stage is off (None)."""
    return None if value is None or (type(value) in (int, bool) and not value) else value


class MeasureSpec(_Strict):
    """Which similarity measures to compute, their parameters and the feature preparation."""

    names: list[str] | Literal["all", "paper"] = "paper"
    params: dict[str, Any] = Field(default_factory=lambda: {"k": 10})
    prepare: PrepareSpec = Field(default_factory=PrepareSpec)
    permutations: StrictInt = Field(
        0,
        ge=0,
        le=100_000,  # metrics._validate.MAX_RESAMPLES
        description="permutation-test size per pair (0 = off)",
    )
    calibrate: StrictInt = Field(
        0,
        ge=0,
        le=100_000,
        description="row permutations K for calibrated scores "
        "(metrics.calibrate; adds null_mean, tau, calibrated; 0 = off)",
    )
    calibrate_names: list[str] | None = Field(
        None, description="the measures to calibrate (default: every computed one); the others' rows get NaN"
    )
    behavioural: list[str] | Literal["all", "none"] = Field(
        "none",
        description="behavioural measures on the layer 'output' of classifier pairs "
        "(reprsim.experiments.behaviour): all, none or a list",
    )
    paired: Annotated[PairedSpec | None, BeforeValidator(_paired_off)] = Field(
        None, description="paired differences highest vs lowest fraction on shared inputs (0 = off)"
    )

    @field_validator("calibrate_names")
    @classmethod
    def _calibrate_names(cls, v: list[str] | None) -> list[str] | None:
        return _known_measures(v, "calibrate_names")

    @field_validator("behavioural")
    @classmethod
    def _behavioural(cls, v: list[str] | str) -> list[str] | str:
        from reprsim.metrics.behavioural import BEHAVIOURAL

        unknown = [name for name in v if name not in BEHAVIOURAL] if isinstance(v, list) else []
        if unknown:
            raise ValueError(f"unknown behavioural measure(s) {unknown}; valid: {list(BEHAVIOURAL)}")
        return v

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        # options left at their defaults are not dumped, so run folders of older configs still resume
        for key, off in (("calibrate", 0), ("calibrate_names", None), ("behavioural", "none"), ("paired", None)):
            if data.get(key, off) in (off, []) and key in data:
                data.pop(key)
        return data

    def resolved_behavioural(self) -> list[str]:
        """The behavioural measures to compute on the layer ``output`` ([] when off)."""
        from reprsim.metrics.behavioural import BEHAVIOURAL

        if self.behavioural == "none":
            return []
        return list(BEHAVIOURAL) if self.behavioural == "all" else list(self.behavioural)

    def calibrated_names(self) -> list[str]:
        """The computed measures that get calibrated columns (all of them unless ``calibrate_names``)."""
        names = self.resolved_names()
        return names if self.calibrate_names is None else [n for n in names if n in self.calibrate_names]

    def resolved_names(self) -> list[str]:
        from reprsim import metrics

        if self.names == "all":
            return list(metrics.MEASURES)
        if self.names == "paper":
            return list(metrics.PAPER_MEASURES)
        return list(self.names)


class AttackParams(_Strict):
    """The values an ``attack_transfer`` stage's ``params`` may give (which keys apply depends on the attack)."""

    decay: Annotated[float, Field(ge=0.0)] | None = None
    step_size: Annotated[float, Field(gt=0.0)] | None = None
    norm: Literal["linf", "l2"] | None = None
    random_start: StrictBool | None = None
    targeted: StrictBool | None = None
    normalization: tuple[list[float] | float, list[float] | float] | None = None  # (mean, std)
    clip: tuple[float, float] | None = None
    batch_size: Annotated[StrictInt, Field(ge=1)] | None = None
    label_map: list[StrictInt] | dict[StrictInt, StrictInt] | None = None
    loss_fn: Any = None  # a callable: from Python only


class AttackTransferSpec(_Strict):
    """Adversarial transfer stage (:func:`reprsim.attacks.transfer.attack_transfer_stage`); ``params`` go to the
    attack (their values typed by :class:`AttackParams`, their keys checked against the attack)."""

    kind: Literal["attack_transfer"] = "attack_transfer"
    attack: Literal["mi_fgsm", "fgsm", "pgd"] = "mi_fgsm"
    eps_data: StrictFloat = Field(1 / 255, ge=0.0, le=1.0, description="ε (pixel scale) for data-overlap pairs")
    eps_task: StrictFloat = Field(2 / 255, ge=0.0, le=1.0, description="ε for task/combined/attribute pairs")
    eps: Literal["auto"] | None = Field(
        None,
        description="auto: one ε per design, the smallest on a grid up to eps_max at which the source "
        "model's white-box success reaches target_whitebox (reprsim.experiments.attack_eps)",
    )
    target_whitebox: StrictFloat = Field(0.5, gt=0.0, le=1.0, description="eps: auto — white-box success to reach")
    eps_max: StrictFloat = Field(0.3, gt=0.0, le=1.0, description="eps: auto — the largest ε tried")
    steps: StrictInt = Field(3, ge=1)
    n: StrictInt = Field(500, ge=1, description="size of the fixed, seeded probe subset")
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _eps_options(self) -> AttackTransferSpec:
        given = self.model_fields_set
        if self.eps is None and given & {"target_whitebox", "eps_max"}:
            raise ValueError(
                f"{sorted(given & {'target_whitebox', 'eps_max'})} apply with eps: auto only; "
                "add eps: auto or drop them"
            )
        if self.eps == "auto" and given & {"eps_data", "eps_task"}:
            raise ValueError(
                f"eps: auto chooses ε itself; drop {sorted(given & {'eps_data', 'eps_task'})} or drop eps: auto"
            )
        import inspect

        from reprsim.attacks.adversarial import ATTACKS

        # params go to attack_transfer_stage and on to the attack; the stage sets eps, steps and seed itself
        taken = set(inspect.signature(ATTACKS[self.attack]).parameters) - {"model", "x", "y", "eps", "steps", "seed"}
        taken |= {"batch_size", "label_map"}
        unknown = sorted(set(self.params) - taken)
        if unknown:
            raise ValueError(
                f"params: {unknown} is not an option of the {self.attack} attack or of the stage; "
                f"valid: {sorted(taken)} (eps, steps, n and seed are keys of the stage itself)"
            )
        try:
            AttackParams.model_validate(self.params)
        except ValidationError as exc:
            raise ValueError(
                "; ".join(f"params.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            ) from None
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        drop = ("eps", "target_whitebox", "eps_max") if self.eps is None else ("eps_data", "eps_task")
        for key in drop:  # a fixed-ε stage dumps as before
            data.pop(key, None)
        return data


class JailbreakTransferSpec(_Strict):
    """Jailbreak transfer stage (:func:`reprsim.attacks.jailbreak_transfer.jailbreak_transfer`).

    ``params`` are the options as written (older key names included, so the resolved config and
    run folders stay as they were); they are checked when the config loads and :attr:`options`
    holds them typed (:class:`~reprsim.attacks.jailbreak_options.JailbreakOptions`, current names).
    """

    kind: Literal["jailbreak_transfer"] = "jailbreak_transfer"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _typed_options(cls, v: dict[str, Any]) -> dict[str, Any]:
        from reprsim.attacks.jailbreak_options import parse_options

        parse_options(v, where="")  # ValueError naming each bad option; logs a note for older key names
        return v

    @property
    def options(self) -> JailbreakOptions:
        """The typed options (:class:`~reprsim.attacks.jailbreak_options.JailbreakOptions`), format defaults unset."""
        from reprsim.attacks.jailbreak_options import parse_options

        return parse_options(self.params, warn=False)


class ExecutionSpec(_Strict):
    executor: Literal["local", "ray"] = "local"
    workers: StrictInt = Field(1, ge=1, description="units run at once (local: worker processes)")
    threads_per_unit: StrictInt = Field(1, ge=1, description="torch and BLAS (NumPy, SciPy) threads inside each unit")
    address: str | None = Field(None, description="Ray cluster address (e.g. 'auto'); None starts a local instance")
    gpus_per_unit: StrictFloat = Field(0.0, ge=0.0)
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="where units train and run: auto (CUDA when available), cpu, cuda or cuda:N",
    )


class ExperimentConfig(_Strict):
    """A whole causal experiment: the grid sources × models × designs × fractions × seeds."""

    name: str = "experiment"
    sources: list[SourceSpec] = Field(min_length=1)
    probes: list[ProbeSpec] = Field(default_factory=list)
    probe_size: StrictInt = Field(2000, ge=10, description="in-distribution probe inputs per set (seeded subsample)")
    models: list[ModelSpec] = Field(min_length=1)
    train: dict[str, Any] = Field(default_factory=dict, description="reprsim.train.TrainConfig fields")
    overlap: OverlapSpec
    seeds: list[StrictInt] = Field(min_length=1)
    layers: list[str] = Field(default_factory=lambda: ["penultimate"], min_length=1)
    measures: MeasureSpec = Field(default_factory=MeasureSpec)
    consequences: list[Annotated[AttackTransferSpec | JailbreakTransferSpec, Field(discriminator="kind")]] = Field(
        default_factory=list
    )  # discriminated: a bad key is reported for its own stage only
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)

    @field_validator("consequences", mode="before")
    @classmethod
    def _consequence_shorthand(cls, v: Any) -> Any:
        # Accept `consequences: [attack_transfer]` and `[{attack_transfer: {...}}]` besides full mappings.
        out = []
        for item in v or []:
            if isinstance(item, str):
                item = {"kind": item}
            elif isinstance(item, dict) and len(item) == 1 and "kind" not in item:
                ((kind, params),) = item.items()
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
    _check_path_names(config)
    _check_against_registries(config)
    return config


def _check_path_names(config: ExperimentConfig) -> None:
    """Source, model and probe names become parts of unit ids, i.e. of folder names under the run
    folder: no separators, no ``..``, no control characters (see :func:`reprsim.safe_paths.path_name_problem`)."""
    from reprsim.safe_paths import path_name_problem

    named = [(f"sources.{i}.name", s.name) for i, s in enumerate(config.sources)]
    named += [(f"models.{i}.name", m.name) for i, m in enumerate(config.models)]
    named += [(f"probes.{i}.name", p.name) for i, p in enumerate(config.probes)]
    bad = [f"{where}: {name!r} ({problem})" for where, name in named if (problem := path_name_problem(name))]
    if bad:
        raise ConfigError(
            "invalid config: names become parts of folder names; "
            + "; ".join(bad)
            + "; use letters, digits, '-', '_' and '.'"
        )


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config as YAML (every default filled in)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _check_against_registries(config: ExperimentConfig) -> None:
    """Cross-check measure names and parameters against the measure registry (fail before any work).

    What depends on the sources' kinds (models, training recipe, designs, consequences, data) is
    checked by :func:`reprsim.experiments.preflight.preflight`.
    """
    from reprsim import metrics

    names = config.measures.resolved_names()
    unknown = [n for n in names if n not in metrics.MEASURES]
    if unknown:
        raise ConfigError(f"measures.names: unknown measure(s) {unknown}; valid: {sorted(metrics.MEASURES)}")
    accepted = {param for name in names for param in metrics.MEASURES[name].params}
    stray = sorted(set(config.measures.params) - accepted)
    if stray:
        raise ConfigError(
            f"measures.params: {stray} is taken by none of the selected measures; they accept {sorted(accepted)}"
        )
    # each value's range (k >= 1, keep in (0, 1], ...), against the in-distribution probe size: every probe
    # set has at most probe_size rows (larger bounds are checked again per probe set)
    for name in names:
        for param, spec in metrics.MEASURES[name].params.items():
            if param in config.measures.params:
                try:
                    spec.check(config.measures.params[param], config.probe_size)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"measures.params.{param} (measure {name}): {exc}") from None
