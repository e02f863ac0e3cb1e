"""Every ``configs/paper/*.yaml`` against the paper's settings, kept here as a table (from PAPER.md §1–§7).

The table is written from the paper and its code, not from the configs: a config that drifts from the
paper (a fraction list, a seed count, a probe size, a recipe number, the jailbreak's raw prompt) fails
here, and a new paper config must add its row. Every config must also parse, list the differences that
remain, and not claim that a loader is missing that exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reprsim.errors import ReprsimError
from reprsim.experiments import parse_config

PAPER_DIR = Path(__file__).resolve().parents[1] / "configs" / "paper"

DS11 = [round(0.1 * i, 1) for i in range(11)]
F6 = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
THIRDS = [0.0, 1 / 3, 2 / 3, 1.0]
SEEDS10, SEEDS6, SEEDS4 = list(range(10)), list(range(6)), list(range(4))
LORA = {
    "r": 32,
    "alpha": 64,
    "dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}  # §2F
RESNET_SCRATCH = {
    "train.epochs": 50,
    "train.batch_size": 512,
    "train.optimizer": "sgd",
    "train.lr": 0.5,
    "train.momentum": 0.9,
    "train.weight_decay": 0.0005,
    "train.schedule": "triangular",
    "train.warmup_epochs": 10,
    "train.label_smoothing": 0.1,
    "train.hflip": True,
    "probe_size": 10000,
    "seeds": SEEDS10,
    "design.data": DS11,
    "design.task": F6,
}  # §2A
MI_FGSM = {
    "attack": "mi_fgsm",
    "eps_data": 1 / 255,
    "eps_task": 2 / 255,
    "steps": 3,
    "n": 500,
    "params": {"decay": 1.0},
}  # §7a
LLAMA = {
    "seeds": SEEDS4,
    "models.0.dtype": "bfloat16",
    "models.0.lora": LORA,
    "train.block_size": 512,
    "train.batch_size": 32,
    "train.max_steps": 1000,
}  # §2F (8 x 4 = 32 sequences per step)
LLAMA_DS = LLAMA | {"design.data": F6, "probe_size": 10000, "domain.0": "tiny_codes", "text.n_chunks": 80}  # §1c, §4
LLAMA_TASK = LLAMA | {"design.task": THIRDS, "probe_size": 5000, "text.balance": "repeat", "n_domains": 6}  # §1d, §4
JAILBREAK = {
    "n_eval": 50,
    "template": "paper",
    "chat_template": False,
    "mode": "individual",
    "temperature": 0.7,
    "top_p": 0.9,
    "max_new_tokens": 256,
}  # §7b: 50 goals, raw prompt, sampling
NANO_DS = {
    "seeds": SEEDS6,
    "design.data": F6,
    "models.0.options.n_layer": 6,
    "models.0.options.n_head": 6,
    "models.0.options.n_embd": 384,
    "models.0.options.dropout": 0.2,
    "train.block_size": 256,
    "train.batch_size": 256,
    "train.max_steps": 10000,
    "train.lr": 0.0005,
    "train.betas": [0.9, 0.95],
    "train.weight_decay": 0.1,
    "train.grad_clip": 1.0,
    "train.schedule": "cosine",
    "train.warmup_steps": 1000,
    "train.min_lr_ratio": 0.1,
    "train.eval_interval": 100,
    "train.early_stopping_patience": 8,
    "probe_size": 20500,
    "text.tokenizer.type": "hf",
    "n_domains": 3,
}  # §2D ds, §4

#: config file -> {setting: the paper's value}. Keys: dotted paths into the YAML; ``design.<kind>`` = that
#: design's fractions; ``domain.<i>`` = the i-th text corpus's name; ``text.<opt>`` = a text-source option;
#: ``n_domains``; ``jailbreak.<param>``; ``attack``; ``images.task`` = the task design's ``images``.
PAPER = {
    "resnet18_cifar100.yaml": RESNET_SCRATCH
    | {"models.0.options.stem": "cifar", "train.crop_padding": 8, "probes": ["mnist", "svhn"], "images.task": "shared"},
    "resnet18_tinyimagenet.yaml": RESNET_SCRATCH
    | {
        "models.0.options.stem": "imagenet",
        "train.crop_padding": 12,
        "probes": ["mnist", "svhn"],
        "images.task": "shared",
    },
    "colorshapes_partitions.yaml": {
        "seeds": SEEDS10,
        "train.epochs": 20,
        "train.batch_size": 512,
        "train.lr": 0.5,
        "train.warmup_epochs": 10,
        "train.crop_padding": 2,
        "train.label_smoothing": 0.1,
        "probe_size": 21504,
        "design.attribute": [0.0, 0.5, 1.0],
    },  # §2B, §4
    "model_sizes_tinyimagenet.yaml": {
        "seeds": SEEDS4,
        "design.data": F6,
        "design.task": F6,
        "train.epochs": 5,
        "train.batch_size": 256,
        "train.warmup_epochs": 1,
        "train.label_smoothing": 0.1,
        "models.0.train.lr": 0.2,
        "models.4.train.lr": 0.0003,
        "n_models": 8,
        "attack": MI_FGSM,
        "images.task": "shared",
        "probe_size": 10000,
    },  # §2C, §7a
    "model_sizes_tinyimagenet_scratch.yaml": {
        "seeds": SEEDS4,
        "design.data": F6,
        "design.task": F6,
        "attack": MI_FGSM,
        "images.task": "shared",
    },  # §7a attack on scratch models
    "diffusion_cifar10_ds.yaml": {
        "seeds": SEEDS4,
        "design.data": [0.0, 0.25, 0.5, 0.75, 1.0],
        "train.batch_size": 1280,
        "train.lr": 0.0005,
        "train.weight_decay": 0.0,
        "train.grad_clip": 1.0,
        "train.ema_decay": 0.999,
        "probe_size": 10000,
    },  # §2E
    "diffusion_cifar10_task.yaml": {
        "seeds": SEEDS4,
        "design.task": F6,
        "train.batch_size": 1280,
        "train.lr": 0.0005,
        "train.ema_decay": 0.999,
        "images.task": "shared",
        "probe_size": 10000,
    },  # §2E
    "llama_ds.yaml": LLAMA_DS,
    "llama_task.yaml": LLAMA_TASK,
    "llama_jailbreak.yaml": LLAMA_TASK | {f"jailbreak.{k}": v for k, v in JAILBREAK.items()},
    "llama_jailbreak_ds.yaml": LLAMA_DS | {f"jailbreak.{k}": v for k, v in JAILBREAK.items()},
    "nanogpt_shakespeare_ds.yaml": NANO_DS | {"domain.0": "shakespeare_all", "text.val_fraction": 0.1},
    "nanogpt_tinystories_ds.yaml": NANO_DS | {"domain.0": "tinystories", "text.val_fraction": 0.05},
    "nanogpt_task.yaml": {
        "seeds": SEEDS6,
        "design.task": THIRDS,
        "models.0.options.n_layer": 12,
        "models.0.options.n_head": 12,
        "models.0.options.n_embd": 768,
        "models.0.options.dropout": 0.0,
        "train.block_size": 256,
        "train.batch_size": 256,
        "train.max_steps": 20000,
        "train.lr": 0.0001,
        "train.warmup_steps": 2000,
        "train.eval_interval": 500,
        "train.early_stopping_patience": 5,
        "probe_size": 20500,
        "text.balance": "repeat",
        "text.tokenizer.type": "hf",
        "n_domains": 6,
    },  # §2D task, §1d
}


def _path(raw, dotted: str):
    node = raw
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _setting(raw: dict, key: str):
    head, _, rest = key.partition(".")
    designs = raw["overlap"]["designs"]
    if head == "design":
        d = next(d for d in designs if d["kind"] == rest)
        return d.get("fractions", d.get("levels"))
    if head == "images":
        return next(d for d in designs if d["kind"] == rest).get("images")
    text = raw["sources"][0]["options"]
    if head == "text":
        return _path(text, rest)
    if head == "domain":
        d = text["domains"][int(rest)]
        return d["name"] if isinstance(d, dict) else d
    if key == "n_domains":
        return len(text["domains"])
    if key == "n_models":
        return len(raw["models"])
    if key == "probes":
        return [p["name"] for p in raw.get("probes", [])]
    if head in ("jailbreak", "attack"):
        stage = next(
            c for c in raw["consequences"] if ("jailbreak_transfer" if head == "jailbreak" else "attack_transfer") in c
        )
        body = next(iter(stage.values()))
        return body["params"][rest] if head == "jailbreak" else body
    return _path(raw, key)


def _same(got, want) -> bool:
    """Equal, with numbers (and lists of numbers) to float tolerance (1/3 is written 0.333...)."""
    numbers = want if isinstance(want, list) else [want]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers) and numbers:
        return got == pytest.approx(want)
    return got == want


def _load(name: str) -> dict:
    return yaml.safe_load((PAPER_DIR / name).read_text())


def test_every_paper_config_has_a_row_in_the_table():
    assert sorted(p.name for p in PAPER_DIR.glob("*.yaml")) == sorted(PAPER)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_config_matches_the_papers_settings(name):
    raw = _load(name)
    wrong = {}
    for key, want in PAPER[name].items():
        got = _setting(raw, key)
        if not _same(got, want):
            wrong[key] = (got, want)
    assert not wrong, f"{name}: (config, paper) {wrong}"
    parse_config(raw)  # and it is a valid config


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_config_comments_list_what_differs_and_are_true(name):
    text = (PAPER_DIR / name).read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    if name.startswith(("llama_", "nanogpt_")):  # the language-model configs list their differences
        assert "Differences that remain" in header, name
    for stale in ("no local-path loader", "no SVHN loader", "loader is missing", "says it matches the paper"):
        assert stale not in header, (name, stale)


def test_task_sampling_is_uniform_over_corpora_where_the_paper_samples_uniformly():
    """§1d: a window draws one of the model's corpora uniformly: balance repeat, never truncate (which cuts
    every corpus to the shortest) or none (proportional to length)."""
    for name in PAPER:
        raw = _load(name)
        if raw["sources"][0]["name"] == "text" and any(d["kind"] == "task" for d in raw["overlap"]["designs"]):
            assert raw["sources"][0]["options"].get("balance") == "repeat", name


@pytest.mark.parametrize("name", ["nanogpt_shakespeare_ds.yaml", "nanogpt_tinystories_ds.yaml", "nanogpt_task.yaml"])
def test_nanogpt_configs_pass_the_preflight_with_local_corpora_and_a_tokenizer_folder(name, tmp_path):
    """As shipped, once the corpus paths point at local copies and the tokenizer at a local folder."""
    datasets = pytest.importorskip("datasets")
    from test_text_tokenizer_hf import _text, _tokenizer_dir

    from reprsim.experiments.grid import expand
    from reprsim.experiments.preflight import preflight

    raw = _load(name)
    options = raw["sources"][0]["options"]
    folder, _ = _tokenizer_dir(tmp_path / "gpt2")
    assert options["tokenizer"] == {"type": "hf", "path": "/models/gpt2"}
    options["tokenizer"]["path"] = str(folder)
    for i, domain in enumerate(options["domains"]):
        text = _text(i, 40_000)
        if domain["path"].endswith(".txt"):
            path = tmp_path / f"corpus{i}.txt"
            path.write_text(text)
        else:
            fields = domain["field"] if isinstance(domain["field"], list) else [domain["field"]]
            rows = {f: [text[j : j + 2000] for j in range(0, len(text), 2000)] for f in fields}
            split = datasets.Dataset.from_dict(rows)
            path = tmp_path / f"corpus{i}"
            (datasets.DatasetDict({domain["split"]: split}) if "split" in domain else split).save_to_disk(str(path))
        domain["path"] = str(path)
    raw["models"][0]["options"] |= {"n_layer": 1, "n_embd": 48}  # the shape is checked above; keep the build fast
    config = parse_config(raw)
    preflight(config, expand(config)[:2])
    options["tokenizer"]["path"] = str(tmp_path / "no_tokenizer")  # and the preflight is not vacuous
    config = parse_config(raw)
    with pytest.raises(ReprsimError, match="tokenizer"):
        preflight(config, expand(config)[:2])
