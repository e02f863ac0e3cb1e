"""Class-conditional DDPM UNets: diffusers' ``UNet2DModel`` with its ``DDPMScheduler`` noise schedule.

The paper's diffusion family (PAPER.md §2E, §4): a ``UNet2DModel`` conditioned on the class with
``class_embed_type="timestep"`` and ``num_class_embeds = k + 1`` (id ``k`` is the *null* class,
used for label dropout in training and for classifier-free guidance), trained with ε-prediction
MSE at a uniform timestep of a 1000-step linear-β DDPM schedule.

:class:`DiffusionUNet` takes pixels in [0, 1] (N, C, H, W) like every zoo image model and works
in [−1, 1] inside. ``model(x_t, t, class_labels)`` predicts the noise of a noised sample
``x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε`` (:meth:`DiffusionUNet.add_noise`, ``x₀ = 2·pixels − 1``);
``model.training_loss(x, y, generator)`` is what :func:`reprsim.train.train` optimises.
Representations (:func:`denoising_features`): forward hooks at named layers — ``penultimate`` is
the input of ``conv_out`` (the SiLU activation before it) — pooled as the concatenation of the
per-channel spatial mean and population std, (N, 2C).

``diffusers`` is an optional dependency (``pip install 'reprsim[diffusion]'``), imported only
when a UNet is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reprsim.errors import ReprsimError

__all__ = [
    "UNET_PRESETS",
    "DiffusionUNet",
    "DiffusersUNet",
    "MissingDiffusers",
    "denoising_features",
    "denoising_loss",
    "eval_draws",
    "mean_std_pool",
    "require_diffusers",
    "stratified_draws",
    "unet_layer_names",
]

#: The steps of the DDPM noise schedule (diffusers' default linear β from 1e-4 to 0.02).
NUM_TRAIN_TIMESTEPS = 1000

_D, _AD, _U, _AU = "DownBlock2D", "AttnDownBlock2D", "UpBlock2D", "AttnUpBlock2D"

#: Architecture presets. ``paper``: the paper's CIFAR-10 UNet (15.5M parameters at 32×32).
#: ``small``: trains on a 2-core CPU (three levels of 16, 32, 32 channels, attention only in the
#: middle block, at the lowest resolution: 7×7 for 28×28 inputs; 273k parameters). ``tiny``: for
#: tests (two levels of 4 and 8 channels, 11k parameters).
UNET_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "block_out_channels": (4, 8),
        "layers_per_block": 1,
        "down_block_types": (_D, _D),
        "up_block_types": (_U, _U),
        "attention_head_dim": 8,
        "norm_num_groups": 4,
        "dropout": 0.0,
    },
    "small": {
        "block_out_channels": (16, 32, 32),
        "layers_per_block": 1,
        "down_block_types": (_D, _D, _D),
        "up_block_types": (_U, _U, _U),
        "attention_head_dim": 8,
        "norm_num_groups": 8,
        "dropout": 0.0,
    },
    "paper": {
        "block_out_channels": (96, 192, 192),
        "layers_per_block": 2,
        "down_block_types": (_D, _AD, _AD),
        "up_block_types": (_AU, _AU, _U),
        "attention_head_dim": 8,
        "norm_num_groups": 32,
        "dropout": 0.1,
    },
}

INSTALL_HINT = "pip install 'reprsim[diffusion]'"


class MissingDiffusers(ReprsimError, ImportError):
    """diffusers is not installed (the ``diffusion`` extra)."""


def require_diffusers():
    """The ``diffusers`` module; :class:`MissingDiffusers` naming the install command when it is absent."""
    try:
        import diffusers
    except ImportError as exc:
        raise MissingDiffusers(
            f"diffusion models need the diffusers package, which is not installed ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return diffusers


def _padded(size: int, multiple: int) -> int:
    return int(math.ceil(size / multiple) * multiple)


class DiffusionUNet(nn.Module):
    """A class-conditional ε-prediction UNet and its DDPM schedule (see the module docstring).

    Args:
        input_shape: (C, H, W) of the images; H and W are zero-padded inside to a multiple of
            ``2 ** (levels − 1)`` (``levels = len(block_out_channels)``) and cropped back.
        num_classes: k, the classes the model is conditioned on; the class embedding has k + 1
            entries and id k is the null class.
        preset: ``tiny``, ``small`` or ``paper`` (:data:`UNET_PRESETS`); the other architecture
            arguments override single entries of it.
        label_dropout: probability that a training example's label is replaced by the null class.
        num_train_timesteps, beta_schedule, beta_start, beta_end: the ``DDPMScheduler`` schedule.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        preset: str = "small",
        block_out_channels: Sequence[int] | None = None,
        layers_per_block: int | None = None,
        down_block_types: Sequence[str] | None = None,
        up_block_types: Sequence[str] | None = None,
        attention_head_dim: int | None = None,
        norm_num_groups: int | None = None,
        dropout: float | None = None,
        label_dropout: float = 0.1,
        num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
        beta_schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        super().__init__()
        diffusers = require_diffusers()
        if preset not in UNET_PRESETS:
            raise ValueError(f"unknown UNet preset {preset!r}; choose from {sorted(UNET_PRESETS)}")
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or any(s < 1 for s in shape):
            raise ValueError(f"unet: input_shape must be (C, H, W) with positive sizes, got {tuple(input_shape)}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"unet: num_classes must be an int >= 1, got {num_classes!r}")
        if not 0.0 <= float(label_dropout) < 1.0:
            raise ValueError(f"unet: label_dropout must be in [0, 1), got {label_dropout!r}")
        arch = dict(UNET_PRESETS[preset])
        overrides = {
            "block_out_channels": block_out_channels,
            "layers_per_block": layers_per_block,
            "down_block_types": down_block_types,
            "up_block_types": up_block_types,
            "attention_head_dim": attention_head_dim,
            "norm_num_groups": norm_num_groups,
            "dropout": dropout,
        }
        arch.update({k: v for k, v in overrides.items() if v is not None})
        arch["block_out_channels"] = tuple(int(c) for c in arch["block_out_channels"])
        for key in ("down_block_types", "up_block_types"):
            arch[key] = tuple(arch[key])
        levels = len(arch["block_out_channels"])
        if len(arch["down_block_types"]) != levels or len(arch["up_block_types"]) != levels:
            raise ValueError(
                f"unet: {levels} block_out_channels need {levels} down_block_types and up_block_types, "
                f"got {len(arch['down_block_types'])} and {len(arch['up_block_types'])}"
            )
        bad = [c for c in arch["block_out_channels"] if c % arch["norm_num_groups"]]
        if bad:
            raise ValueError(
                f"unet: block_out_channels {bad} are not multiples of norm_num_groups="
                f"{arch['norm_num_groups']}; change one of them"
            )
        c, h, w = shape
        self.input_shape = shape
        self.num_classes = num_classes
        self.null_class = num_classes
        self.label_dropout = float(label_dropout)
        self.num_train_timesteps = int(num_train_timesteps)
        multiple = 2 ** (levels - 1)
        self.padded_size = (_padded(h, multiple), _padded(w, multiple))
        self.schedule = {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": beta_schedule,
            "beta_start": float(beta_start),
            "beta_end": float(beta_end),
        }
        self.unet = diffusers.UNet2DModel(
            sample_size=self.padded_size,
            in_channels=c,
            out_channels=c,
            class_embed_type="timestep",
            num_class_embeds=num_classes + 1,
            **arch,
        )
        scheduler = diffusers.DDPMScheduler(**self.schedule)
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.clone().float(), persistent=False)
        self.reprsim_layers = unet_layer_names(self.unet)
        self.reprsim_default_layer = "penultimate"

    # ---- the denoiser ---------------------------------------------------------------------
    def forward(self, x_t: Tensor, timesteps: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """The predicted noise (N, C, H, W) of noised samples ``x_t`` (N, C, H, W) at integer
        ``timesteps`` (N,) for ``class_labels`` (N,) (None: the null class)."""
        if x_t.dim() != 4 or tuple(x_t.shape[1:]) != self.input_shape:
            raise ValueError(
                f"unet: expected noised images (N, {', '.join(map(str, self.input_shape))}), got {tuple(x_t.shape)}"
            )
        n = x_t.shape[0]
        timesteps = torch.as_tensor(timesteps, device=x_t.device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(n)
        if class_labels is None:
            class_labels = torch.full((n,), self.null_class, dtype=torch.long, device=x_t.device)
        class_labels = torch.as_tensor(class_labels, device=x_t.device)
        h, w = self.input_shape[1:]
        ph, pw = self.padded_size[0] - h, self.padded_size[1] - w
        sample = F.pad(x_t, (0, pw, 0, ph)) if ph or pw else x_t
        out = self.unet(sample, timesteps, class_labels=class_labels).sample
        return out[:, :, :h, :w] if ph or pw else out

    def add_noise(self, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """``√ᾱ_t·x₀ + √(1 − ᾱ_t)·ε`` for clean samples ``x0`` in [−1, 1] (N, C, H, W): the DDPM forward process."""
        ab = self.alphas_cumprod.to(x0.device)[timesteps.to(x0.device)].to(x0.dtype).view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    @staticmethod
    def to_model_space(pixels: Tensor) -> Tensor:
        """Pixels in [0, 1] → the model's [−1, 1]."""
        return pixels * 2 - 1

    def training_loss(self, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """ε-prediction MSE of pixel batch ``x`` (N, C, H, W) in [0, 1] with labels ``y`` (N,).

        Draws, from ``generator`` (a CPU generator) in this order: timesteps uniform in
        [0, num_train_timesteps), the noise ε ~ N(0, I), and — in train mode with
        ``label_dropout`` > 0 — which labels are replaced by the null class.
        """
        n = x.shape[0]
        if int(y.max()) >= self.num_classes or int(y.min()) < 0:
            raise ValueError(
                f"unet: labels go from {int(y.min())} to {int(y.max())} but the model is conditioned on "
                f"{self.num_classes} classes; build it with num_classes >= {int(y.max()) + 1}"
            )
        t = torch.randint(0, self.num_train_timesteps, (n,), generator=generator)
        noise = torch.randn(tuple(x.shape), generator=generator, dtype=torch.float32)
        labels = y.long()
        if self.training and self.label_dropout > 0:
            drop = torch.rand(n, generator=generator) < self.label_dropout
            labels = torch.where(drop.to(labels.device), torch.full_like(labels, self.null_class), labels)
        t, noise = t.to(x.device), noise.to(x.device, x.dtype)
        x_t = self.add_noise(self.to_model_space(x), noise, t)
        return F.mse_loss(self(x_t, t, labels).float(), noise.float())

    # ---- sampling -------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, class_labels: Sequence[int] | Tensor, seed: int = 0, steps: int = 25, guidance_scale: float = 3.0
    ) -> Tensor:
        """DDIM samples (η = 0) for ``class_labels`` (n,) with classifier-free guidance against the
        null class; the initial noise comes from a CPU generator seeded with ``seed``. Returns
        pixels in [0, 1], (n, C, H, W), on the model's device."""
        diffusers = require_diffusers()
        device = self.alphas_cumprod.device
        labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1).to(device)
        n = labels.shape[0]
        scheduler = diffusers.DDIMScheduler(**self.schedule)
        scheduler.set_timesteps(int(steps))
        gen = torch.Generator().manual_seed(int(seed))
        x = torch.randn((n, *self.input_shape), generator=gen).to(device)
        null = torch.full_like(labels, self.null_class)
        was_training = self.training
        self.eval()
        try:
            for t in scheduler.timesteps:
                ts = torch.full((2 * n,), int(t), dtype=torch.long, device=device)
                eps = self(torch.cat([x, x]), ts, torch.cat([labels, null]))
                cond, uncond = eps[:n], eps[n:]
                x = scheduler.step(uncond + guidance_scale * (cond - uncond), int(t), x).prev_sample
        finally:
            self.train(was_training)
        return ((x + 1) / 2).clamp(0, 1)


def unet_layer_names(unet: nn.Module, prefix: str = "unet.") -> dict[str, str]:
    """Public layer names of a diffusers ``UNet2DModel`` held at ``prefix``: ``down.i``, ``mid``,
    ``up.i`` (the blocks' outputs) and ``penultimate`` (the input of ``conv_out``)."""
    mid = {"mid": f"{prefix}mid_block"} if getattr(unet, "mid_block", None) is not None else {}
    return {
        **{f"down.{i}": f"{prefix}down_blocks.{i}" for i in range(len(unet.down_blocks))},
        **mid,
        **{f"up.{i}": f"{prefix}up_blocks.{i}" for i in range(len(unet.up_blocks))},
        "penultimate": f"{prefix}conv_out:input",
    }


class DiffusersUNet(nn.Module):
    """A diffusers ``UNet2DModel`` (trained anywhere) behind :class:`DiffusionUNet`'s interface, so
    :func:`denoising_features` reads it exactly as a zoo UNet: pixels in [0, 1] → x₀ = 2·pixels − 1,
    :meth:`add_noise` with ``scheduler``'s ᾱ_t, ``model(x_t, t)`` with the null class label.

    Args:
        unet: the ``UNet2DModel``.
        scheduler: a ``DDPMScheduler`` (its ``alphas_cumprod`` and ``num_train_timesteps``);
            None: diffusers' default 1000-step linear-β schedule (reprsim's).
        null_class: the class id fed as "no class" to a class-conditional UNet (None:
            ``num_class_embeds − 1``, reprsim's convention); an unconditional UNet gets no label.
    """

    add_noise = DiffusionUNet.add_noise
    to_model_space = staticmethod(DiffusionUNet.to_model_space)

    def __init__(self, unet: nn.Module, scheduler: Any = None, null_class: int | None = None) -> None:
        super().__init__()
        if scheduler is None:
            scheduler = require_diffusers().DDPMScheduler()
        cfg = unet.config
        self.unet = unet
        size = cfg.sample_size if isinstance(cfg.sample_size, (list, tuple)) else (cfg.sample_size,) * 2
        self.input_shape = (int(cfg.in_channels), *(int(s) for s in size))
        conditional = cfg.num_class_embeds is not None
        default_null = int(cfg.num_class_embeds) - 1 if conditional else None
        self.null_class = (default_null if null_class is None else int(null_class)) if conditional else None
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.clone().float(), persistent=False)
        self.reprsim_layers = unet_layer_names(unet)
        self.reprsim_default_layer = "penultimate"

    def forward(self, x_t: Tensor, timesteps: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """The UNet's output (N, C, H, W) for noised samples ``x_t`` at integer ``timesteps`` (N,);
        ``class_labels`` None: the null class (none for an unconditional UNet)."""
        if x_t.dim() != 4 or x_t.shape[1] != self.input_shape[0]:
            raise ValueError(f"unet: expected noised images (N, {self.input_shape[0]}, H, W), got {tuple(x_t.shape)}")
        if class_labels is None and self.null_class is not None:
            class_labels = torch.full((x_t.shape[0],), self.null_class, dtype=torch.long, device=x_t.device)
        return self.unet(x_t, timesteps, class_labels=class_labels).sample


# ---- read-out -------------------------------------------------------------------------------
def mean_std_pool(t: Tensor) -> Tensor:
    """(N, C, H, W) → (N, 2C): per-channel spatial mean, then per-channel population std (the paper's pooling)."""
    if t.dim() != 4:
        raise ValueError(f"mean_std_pool expects a spatial map (N, C, H, W), got {tuple(t.shape)}")
    flat = t.float().flatten(2)
    return torch.cat([flat.mean(dim=2), flat.std(dim=2, unbiased=False)], dim=1)


@torch.no_grad()
def denoising_features(
    model: DiffusionUNet,
    images: Any,
    noise: Any,
    timesteps: Any,
    layers: Sequence[str] = ("penultimate",),
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """Representations of a diffusion model on noised images, fed with the null class label.

    ``images`` are clean pixels (n, C, H, W) in [0, 1]; ``noise`` (n, C, H, W) and ``timesteps``
    (n,) give each image's ε and t, so ``x_t = model.add_noise(2·images − 1, ε, t)``: two models
    given the same three arrays see bit-identical inputs. Returns ``{layer: float32 (n, 2C)}``
    (:func:`mean_std_pool` of the layer's output, or input for ``...:input`` layers).
    """
    from reprsim.devices import model_device
    from reprsim.models.layers import resolve_layer

    images = torch.as_tensor(np.asarray(images, dtype=np.float32))
    noise = torch.as_tensor(np.asarray(noise, dtype=np.float32))
    timesteps = torch.as_tensor(np.asarray(timesteps, dtype=np.int64))
    if noise.shape != images.shape or timesteps.shape != (images.shape[0],):
        raise ValueError(
            f"denoising_features: images {tuple(images.shape)}, noise {tuple(noise.shape)} and timesteps "
            f"{tuple(timesteps.shape)} must be (n, C, H, W), (n, C, H, W) and (n,)"
        )
    device = model_device(model)
    out: dict[str, list[Tensor]] = {layer: [] for layer in layers}
    handles = []
    for layer in layers:
        module, capture_input = resolve_layer(model, layer)

        def hook(_module, args, output, layer=layer, capture_input=capture_input):
            t = args[0] if capture_input else output
            t = t[0] if isinstance(t, (tuple, list)) else t
            out[layer].append(mean_std_pool(t).cpu())

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(images), batch_size):
            x0 = model.to_model_space(images[s : s + batch_size].to(device))
            t = timesteps[s : s + batch_size].to(device)
            x_t = model.add_noise(x0, noise[s : s + batch_size].to(device), t)
            model(x_t, t, None)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {layer: torch.cat(parts).numpy().astype(np.float32) for layer, parts in out.items()}


def eval_draws(
    n: int, shape: Sequence[int], seed: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded noise (n, *shape) float32 and timesteps (n,) int64 uniform in [0, T).

    Noise and timesteps come from two streams spawned from ``seed``, each filled row by row, so
    row i (image i's ε and t) does not depend on n: the first m rows of a draw of n > m equal the
    draw of m.
    """
    noise_seq, t_seq = np.random.SeedSequence(int(seed)).spawn(2)
    noise = np.random.default_rng(noise_seq).standard_normal((int(n), *(int(s) for s in shape)), dtype=np.float32)
    timesteps = np.random.default_rng(t_seq).integers(0, int(num_train_timesteps), size=int(n), dtype=np.int64)
    return noise, timesteps


def stratified_draws(
    n: int, draws: int, shape: Sequence[int], seed: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
) -> tuple[np.ndarray, np.ndarray]:
    """``draws`` noised copies per image for a low-variance loss estimate: noise (n·draws, *shape)
    float32 and timesteps (n·draws,) int64, row ``i·draws + j`` being image i's copy j, whose t is
    uniform in the j-th of ``draws`` equal strata of [0, T) (stratified sampling of a uniform t).

    As in :func:`eval_draws`, two streams spawned from ``seed`` are filled image by image, so
    image i's draws do not depend on n.
    """
    n, draws, steps = int(n), int(draws), int(num_train_timesteps)
    noise_seq, t_seq = np.random.SeedSequence(int(seed)).spawn(2)
    noise = np.random.default_rng(noise_seq).standard_normal((n * draws, *(int(s) for s in shape)), dtype=np.float32)
    u = np.random.default_rng(t_seq).random((n, draws))
    timesteps = np.floor((np.arange(draws)[None, :] + u) * steps / draws).astype(np.int64).clip(0, steps - 1)
    return noise, timesteps.reshape(-1)


@torch.no_grad()
def denoising_loss(
    model: DiffusionUNet, images: Any, labels: Any, seed: int, draws: int = 4, batch_size: int = 256
) -> float:
    """Mean ε-prediction MSE of ``model`` on clean ``images`` (n, C, H, W) in [0, 1] with class
    ``labels`` (n,), over ``draws`` noised copies of each image (:func:`stratified_draws`
    ``(n, draws, shape, seed)``); NaN for n = 0.

    An estimate of the training loss (uniform t) without label dropout; two image sets scored with
    the same ``seed`` get the same ε and t row by row, so their difference is not timestep noise.
    """
    from reprsim.devices import model_device

    images = np.asarray(images, dtype=np.float32)
    if len(images) == 0:
        return float("nan")
    noise, timesteps = stratified_draws(len(images), draws, images.shape[1:], seed, model.num_train_timesteps)
    images = np.repeat(images, draws, axis=0)
    labels = np.repeat(np.asarray(labels, dtype=np.int64), draws)
    device = model_device(model)
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for s in range(0, len(images), batch_size):
            x0 = model.to_model_space(torch.from_numpy(images[s : s + batch_size]).to(device))
            eps = torch.from_numpy(noise[s : s + batch_size]).to(device)
            t = torch.from_numpy(timesteps[s : s + batch_size]).to(device)
            y = torch.from_numpy(labels[s : s + batch_size]).to(device)
            pred = model(model.add_noise(x0, eps, t), t, y).float()
            total += float(((pred - eps) ** 2).mean(dim=(1, 2, 3)).sum())
    finally:
        model.train(was_training)
    return total / len(images)
