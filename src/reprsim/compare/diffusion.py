"""Diffusion UNets in ``compare_models``: the sweep's protocol (:mod:`reprsim.experiments.families.unet`).

A diffusion model is reprsim's zoo :class:`~reprsim.models.unet.DiffusionUNet` (an ``nn.Module`` or
a checkpoint written by ``reprsim.train``) or a diffusers ``UNet2DModel`` (an ``nn.Module``, or a
``save_pretrained`` folder, loaded locally and wrapped by :class:`~reprsim.models.unet.DiffusersUNet`;
its schedule is the folder's ``scheduler_config.json`` when it has one, else diffusers' default
DDPM schedule). Each probe image gets one ε and one t — :func:`~reprsim.models.unet.eval_draws`
``(N, image shape, noise_seed, T)``, or a fixed ``timesteps`` — and both models see the identical
x_t, t and the null class label; features are :func:`~reprsim.models.unet.denoising_features`
(mean ‖ std over space, (N, 2C)), whatever ``pool`` says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reprsim.compare.references import ModelRef
from reprsim.errors import ReprsimError

__all__ = ["Draws", "is_diffusers_folder", "is_diffusion", "load_diffusers", "plan_draws", "wrap_module"]


def is_diffusion(module: nn.Module) -> bool:
    """Whether ``module`` is a denoiser :func:`denoising_features` can read (zoo or wrapped diffusers UNet)."""
    from reprsim.models.unet import DiffusersUNet, DiffusionUNet

    return isinstance(module, (DiffusionUNet, DiffusersUNet))


def wrap_module(ref: ModelRef) -> ModelRef:
    """A bare diffusers ``UNet2DModel`` given as an ``nn.Module`` → wrapped (others unchanged)."""
    import sys

    if "diffusers" not in sys.modules:  # a diffusers model exists only once diffusers is imported (it costs ~2 s)
        return ref
    from diffusers import UNet2DModel

    if isinstance(ref.module, UNet2DModel):
        from reprsim.models.unet import DiffusersUNet

        ref.module = DiffusersUNet(ref.module).eval()
    return ref


def is_diffusers_folder(path: Path) -> bool:
    """Whether ``path`` is a folder written by a diffusers model's ``save_pretrained`` (``_diffusers_version``)."""
    try:
        return path.is_dir() and "_diffusers_version" in json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def load_diffusers(path: Path, which: str) -> ModelRef:
    """A local ``UNet2DModel`` folder (never downloads), wrapped for :func:`denoising_features`.

    Raises:
        ReprsimError: diffusers missing, a diffusers class other than ``UNet2DModel``, or unreadable weights.
    """
    from reprsim.models.unet import DiffusersUNet, require_diffusers

    diffusers = require_diffusers()
    cls = json.loads((path / "config.json").read_text(encoding="utf-8")).get("_class_name")
    if cls != "UNet2DModel":
        raise ReprsimError(
            f"model {which}: {path} holds a diffusers {cls}; compare_models reads UNet2DModel folders "
            "(save_pretrained of a UNet2DModel) only."
        )
    try:
        unet = diffusers.UNet2DModel.from_pretrained(str(path), local_files_only=True)
        sched_file = path / "scheduler_config.json"
        scheduler = (
            diffusers.DDPMScheduler.from_pretrained(str(path), local_files_only=True) if sched_file.is_file() else None
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ReprsimError(
            f"model {which}: cannot load the diffusers UNet2DModel in {path}: {str(exc).strip().splitlines()[0]}"
        ) from exc
    return ModelRef(
        DiffusersUNet(unet, scheduler).eval(), f"UNet2DModel ({path.name})", "image", None, False, str(path)
    )


@dataclass
class Draws:
    """Every probe image's ε (N, C, H, W) float32 and t (N,) int64, and what they were."""

    noise: np.ndarray
    timesteps: np.ndarray
    description: str

    def features(
        self,
        ref: ModelRef,
        images: torch.Tensor,
        names: dict[str, str],
        which: str,
        batch_size: int,
        device: str | torch.device | None,
    ) -> dict[str, np.ndarray]:
        """``{layer as shown: float32 (N, 2C)}``: :func:`denoising_features` on x_t at t, null class label
        (the first two images only with ``images`` of 2 rows: the early shape check)."""
        from reprsim.models.unet import denoising_features

        n = len(images)
        dev = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
        ref.module.to(dev)
        try:
            raw = denoising_features(
                ref.module,
                pixels(images),
                self.noise[:n],
                self.timesteps[:n],
                layers=list(dict.fromkeys(names.values())),
                batch_size=batch_size,
            )
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ReprsimError(
                f"model {which} ({ref.label}) cannot take images of shape {tuple(images.shape[1:])}: "
                f"{text} (it expects images (N, {', '.join(map(str, ref.module.input_shape))}) in "
                "[0, 1])."
            ) from exc
        finally:
            ref.module.to("cpu")
        return {shown: raw[name] for shown, name in names.items()}


def pixels(data: torch.Tensor) -> np.ndarray:
    """Probe images as float32 pixels in [0, 1] (uint8 images are divided by 255)."""
    return (data.float() / 255.0 if data.dtype == torch.uint8 else data.float()).numpy()


def plan_draws(
    refs: list[ModelRef], data: torch.Tensor | None, noise_seed: Any, timesteps: Any, attack: Any
) -> Draws | None:
    """The noise and timesteps of the diffusion models among ``refs`` (None: there are none).

    ``timesteps``: None (uniform draws in [0, T) from ``noise_seed``), an int (that t for every
    image) or an (N,) array of ints in [0, T).

    Raises:
        ValueError: ``noise_seed`` / ``timesteps`` without a diffusion model, ``attack`` with one,
            text inputs, two UNets with different noise schedules (x_t would differ), bad timesteps.
    """
    from reprsim.models.unet import eval_draws

    unets = [r for r in refs if is_diffusion(r.module)]
    if not unets:
        if noise_seed is not None or timesteps is not None:
            raise ValueError(
                "noise_seed= / timesteps= (--noise-seed / --timestep) are for diffusion UNets; neither "
                "model is one (remove them)."
            )
        return None
    if attack is not None:
        raise ValueError("attack= needs classifiers; a diffusion UNet has no class output to attack (remove attack=).")
    if data is None or data.dim() != 4:
        raise ValueError(
            f"diffusion UNets take images (N, C, H, W) in [0, 1]; got "
            f"{'texts' if data is None else f'inputs of shape {tuple(data.shape)}'}."
        )
    schedules = [r.module.alphas_cumprod for r in unets]
    if len(schedules) == 2 and (schedules[0].shape != schedules[1].shape or not torch.allclose(*schedules)):
        raise ValueError(
            "the two diffusion UNets have different noise schedules, so the same ε and t give them "
            "different x_t; compare UNets trained with the same DDPM schedule."
        )
    steps = unets[0].module.num_train_timesteps
    seed = 0 if noise_seed is None else noise_seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"noise_seed must be an int >= 0; got {noise_seed!r}.")
    n = int(data.shape[0])
    noise, drawn = eval_draws(n, tuple(data.shape[1:]), int(seed), steps)
    if timesteps is None:
        return Draws(noise, drawn, f"ε and t ~ U[0, {steps}) from noise_seed={seed}")
    if isinstance(timesteps, (int, np.integer)) and not isinstance(timesteps, bool):
        t = np.full(n, int(timesteps), dtype=np.int64)
        what = f"t = {int(timesteps)}"
    else:
        t = np.asarray(timesteps)
        if t.shape != (n,) or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(
                f"timesteps must be None, an int or ({n},) ints (one per input); got {t.dtype} of shape {t.shape}."
            )
        t = t.astype(np.int64)
        what = "t given per input"
    if t.min() < 0 or t.max() >= steps:
        raise ValueError(
            f"timesteps must be in [0, {steps}) (the models' DDPM steps); got {int(t.min())}..{int(t.max())}."
        )
    return Draws(noise, t, f"ε from noise_seed={seed}, {what}")
