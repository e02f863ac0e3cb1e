"""The ``unet`` family: class-conditional DDPM UNets trained on the image world's split (PAPER.md §2E, §4).

Models are zoo ``unet`` entries (:mod:`reprsim.models.unet`), trained through
:func:`reprsim.train.train` on their ε-prediction loss (``TrainConfig.ema_decay`` for the paper's
EMA weights); with task overlap each model is conditioned on its own K classes plus the null class.
It trains data and task designs (no alignment arm, no shared initialisation) and is put through no
consequence stage (there is no classifier to attack).

Probe sets are the image world's; each probe image is noised once — ε and t drawn from a generator
seeded with the unit's probe seed (test images: row i of one draw over the whole test set, so an
image gets the same ε and t in every subset; an OOD set: its own draw) — and both models receive
the identical x_t, t and the null class label (``ProbeSet.extra``: ``noise``, ``timesteps``). OOD
sources must have the training images' shape (a denoiser's input is not resized). Representation:
``penultimate`` = the input of ``conv_out``, pooled as per-channel mean ‖ population std.

Per-pair columns: ``denoise_loss_a`` / ``_b`` (ε-MSE on up to :data:`EVAL_N` test images of the
model's classes, conditioned on their labels, :data:`EVAL_DRAWS` stratified timesteps each) and
``train_denoise_loss_a`` / ``_b`` (the same on its training images, with the same ε and t row by
row: a lower training loss is memorisation). Files: DDIM samples of each model, one row per class
(``samples_a.png``, ``samples_b.png`` and ``samples.json`` naming the rows), for the pairs of the
config's first seed — one pair per fraction.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from reprsim.errors import ReprsimError
from reprsim.experiments.families.image_models import ImageModels
from reprsim.results import (
    SAMPLE_FILES,  # what save_artifacts writes into the unit folder
)
from reprsim.storage import atomic_write_bytes

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.grid import Unit
    from reprsim.experiments.pairs import PairData
    from reprsim.experiments.worlds.base import DataWorld, ProbeSet, Trained

#: Seed of the denoising-loss draws (the same for every model, so A and B are scored alike).
EVAL_SEED = 0
#: Images (test, and training) the per-model denoising loss is measured on, and noised copies of each.
EVAL_N = 256
EVAL_DRAWS = 4
#: Sample grids: DDIM steps, samples per class, classifier-free guidance scale, noise seed.
SAMPLE_STEPS = 20
SAMPLES_PER_CLASS = 4
GUIDANCE_SCALE = 3.0
SAMPLE_SEED = 0


def draw_seed(probe_seed: int, name: str) -> int:
    """The seed of the noise and timesteps of probe set ``name`` (``"test"``: the whole test set)."""
    return int(np.random.SeedSequence([int(probe_seed), zlib.crc32(name.encode())]).generate_state(1)[0])


def num_timesteps(unit: Unit) -> int:
    """The number of DDPM steps of the unit's model (its ``num_train_timesteps`` option, default 1000)."""
    from reprsim.models.unet import NUM_TRAIN_TIMESTEPS

    return int(unit.model.options.get("num_train_timesteps", NUM_TRAIN_TIMESTEPS))


def shape_problem(name: str, got: tuple[int, ...], want: tuple[int, ...]) -> str | None:
    """A line saying that probe set ``name``'s images do not fit the models, or None when they do."""
    if tuple(got) == tuple(want):
        return None
    return (
        f"probes.{name}: images of shape {tuple(got)} but the diffusion models take {tuple(want)} (the training "
        "images' shape); a denoiser's input is not resized, so use a probe source of that shape (e.g. mnist for "
        "fashion_mnist models, colorshapes with the same image_size) or remove the probe"
    )


def write_grid(images: np.ndarray, n_rows: int, path: Path) -> None:
    """Save pixels (n_rows·m, C, H, W) in [0, 1] as one PNG grid with ``n_rows`` rows (2-pixel gaps)."""
    from PIL import Image

    n, c, h, w = images.shape
    cols = n // n_rows
    scale = max(1, 64 // max(h, w))  # small images are enlarged (nearest neighbour) to be visible
    gap = 2
    grid = np.ones((n_rows * (h * scale + gap) + gap, cols * (w * scale + gap) + gap, 3), dtype=np.uint8) * 255
    pixels = np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        tile = pixels[i].transpose(1, 2, 0)
        tile = np.repeat(tile, 3, axis=2) if c == 1 else tile[:, :, :3]
        tile = tile.repeat(scale, axis=0).repeat(scale, axis=1)
        y, x = gap + r * (h * scale + gap), gap + col * (w * scale + gap)
        grid[y : y + h * scale, x : x + w * scale] = tile
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getbuffer())  # temp file + rename, never through a planted symlink


class DiffusionUNet(ImageModels):
    name = "unet"
    model_kinds = ("unet",)
    kinds = {"image": "diffusion"}
    overlap_kinds = ("data", "task")
    consequences = ()
    design_arms = ()  # its fit has no alignment loss, and shared initialisation is untested for UNets
    feature_batch_size = 256
    feature_pool = "mean_std"

    def prepare_probes(
        self, config: ExperimentConfig, unit: Unit, pair: PairData, probes: list[ProbeSet]
    ) -> list[ProbeSet]:
        """Each probe set with every image's noise and timestep in ``extra`` (see the module docstring)."""
        from reprsim.data.config_sets import load_probe
        from reprsim.models.unet import eval_draws

        specs = {spec.name: spec for spec in config.probes}
        seed, steps = unit.seeds()["probe"], num_timesteps(unit)
        shape = tuple(pair.test.inputs.shape[1:])
        noise, timesteps = eval_draws(len(pair.test.inputs), shape, draw_seed(seed, "test"), steps)
        prepared = []
        for probe in probes:
            if probe.rows is not None:  # drawn from the test set: its rows of the one test-set draw
                extra = {"noise": noise[probe.rows], "timesteps": timesteps[probe.rows]}
            else:  # an OOD set: its own draw, on images of the training images' shape (never resized)
                source_shape = tuple(load_probe(specs[probe.name]).inputs.shape[1:])
                problem = shape_problem(probe.name, source_shape, shape)
                if problem is not None:
                    raise ReprsimError(problem)
                ood_noise, ood_t = eval_draws(len(probe), shape, draw_seed(seed, probe.name), steps)
                extra = {"noise": ood_noise, "timesteps": ood_t}
            prepared.append(replace(probe, extra=probe.extra | extra))
        return prepared

    def fit(
        self,
        config: ExperimentConfig,
        unit: Unit,
        pair: PairData,
        side: str,
        model: nn.Module,
        checkpoint_dir: Path,
        device: torch.device,
        progress: bool,
        world: DataWorld,
        partner: Trained | None = None,
    ) -> tuple[nn.Module, dict[str, Any]]:
        """Train on the side's images and labels (seed stream ``order_<side>``); info: the denoising
        loss on test and training images of the model's classes, the last epoch's training loss, seconds."""
        from reprsim.data.config_sets import subsample
        from reprsim.models.unet import denoising_loss
        from reprsim.train import TrainConfig, train

        result = train(
            model,
            pair.train_set(side),
            TrainConfig.from_dict(unit.train),
            unit.seeds()[f"order_{side}"],
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            device=device,
        )
        losses = {}
        for key, (x, y) in (("denoise_loss", pair.eval_set(side)), ("train_denoise_loss", pair.train_set(side))):
            idx = subsample(len(x), EVAL_N, EVAL_SEED)
            losses[key] = denoising_loss(result.model, x[idx], y[idx], EVAL_SEED, draws=EVAL_DRAWS)
        info = losses | {
            "final_train_loss": float(result.history[-1]["train_loss"]) if result.history else None,
            "seconds": float(result.seconds),
        }
        return result.model, info

    def features(
        self, config: ExperimentConfig, model: nn.Module, probe: ProbeSet, world: DataWorld
    ) -> dict[str, np.ndarray]:
        """``{layer: (n, 2C)}``: the layers' mean ‖ std on the probe's x_t at its t, null class label."""
        from reprsim.models.unet import denoising_features

        return denoising_features(
            model,
            probe.inputs,
            probe.extra["noise"],
            probe.extra["timesteps"],
            layers=config.layers,
            batch_size=self.feature_batch_size,
        )

    def columns(self, pair: PairData, a: Trained, b: Trained) -> dict[str, Any]:
        return {
            "denoise_loss_a": a.info["denoise_loss"],
            "denoise_loss_b": b.info["denoise_loss"],
            "train_denoise_loss_a": a.info["train_denoise_loss"],
            "train_denoise_loss_b": b.info["train_denoise_loss"],
        }

    def save_artifacts(
        self, config: ExperimentConfig, unit: Unit, pair: PairData, a: Trained, b: Trained, folder: Path
    ) -> None:
        """DDIM samples of both models, one row per class, for the pairs of the config's first seed."""
        if unit.seed != config.seeds[0]:
            return
        folder.mkdir(parents=True, exist_ok=True)
        names = pair.train.meta.get("class_names", {}).get(pair.label)
        rows: dict[str, Any] = {
            "steps": SAMPLE_STEPS,
            "guidance_scale": GUIDANCE_SCALE,
            "seed": SAMPLE_SEED,
            "per_class": SAMPLES_PER_CLASS,
        }
        for side, trained in (("a", a), ("b", b)):
            classes = list(pair.split.a_classes if side == "a" else pair.split.b_classes)
            labels = np.repeat(np.arange(len(classes)), SAMPLES_PER_CLASS)
            images = trained.model.sample(labels, seed=SAMPLE_SEED, steps=SAMPLE_STEPS, guidance_scale=GUIDANCE_SCALE)
            write_grid(images.cpu().numpy(), len(classes), folder / SAMPLE_FILES[side])
            rows[side] = [names[c] if names is not None and c < len(names) else str(c) for c in classes]
        atomic_write_bytes(folder / SAMPLE_FILES["rows"], json.dumps(rows, indent=2).encode())

    def model_problems(self, config: ExperimentConfig, unit: Unit, pair: PairData) -> list[str]:
        """The image models' checks, once diffusers is there (:meth:`check` says once when it is not)."""
        from reprsim.models.unet import MissingDiffusers, require_diffusers

        try:
            require_diffusers()
        except MissingDiffusers:
            return []
        return super().model_problems(config, unit, pair)

    def dry_forward(self, model: nn.Module, x: torch.Tensor) -> None:
        model(x, torch.zeros(len(x), dtype=torch.long))  # a UNet also takes the timestep

    def check(self, config: ExperimentConfig, units: list[Unit], world: DataWorld) -> list[str]:
        """diffusers is installed and the probe sources have the training images' shape (the image
        world then checks the splits, the models, the layers and k against every probe set)."""
        from reprsim.data.config_sets import load_probe, load_source
        from reprsim.models.unet import MissingDiffusers, require_diffusers

        try:
            require_diffusers()
        except MissingDiffusers as exc:
            return [f"models: {exc}"]
        problems: list[str] = []
        shapes = {}
        for unit in units:
            key = json.dumps(unit.source.model_dump(mode="json"), sort_keys=True)
            if key not in shapes:
                try:
                    shapes[key] = tuple(load_source(unit.source, "train").inputs.shape[1:])
                except (ValueError, FileNotFoundError, ReprsimError):
                    continue  # the world's checks report it
        for spec in config.probes:
            try:
                got = tuple(load_probe(spec).inputs.shape[1:])
            except (ValueError, FileNotFoundError, ReprsimError):
                continue
            problems += [p for want in dict.fromkeys(shapes.values()) if (p := shape_problem(spec.name, got, want))]
        return problems
