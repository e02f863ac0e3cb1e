"""The image classifier families: a zoo classifier (``classifier``) or a local Hugging Face image model (``hf_image``).

Both train on the image world's split through :func:`reprsim.train.train` (model B of an alignment
unit adds ``align`` · (1 − CKA to the frozen model A), :mod:`reprsim.training.alignment`) and
report accuracies; their models are what the ``attack_transfer`` stage attacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from reprsim.experiments.families.image_models import ImageModels, init_side

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.grid import Unit
    from reprsim.experiments.pairs import PairData
    from reprsim.experiments.worlds.base import DataWorld, Trained


class ZooClassifier(ImageModels):
    name = "classifier"
    model_kinds = ("image",)
    kinds = {"image": "image"}
    consequences = ("attack_transfer",)
    design_arms = ("align", "init")
    feature_batch_size = 512
    feature_pool = "avg"
    class_outputs = True

    def partner(self, unit: Unit, side: str) -> str | None:
        """Model B of an alignment unit (``align`` > 0) trains against the trained model A."""
        return "a" if side == "b" and unit.align > 0 else None

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
        """Train ``model``; model B of an alignment unit adds ``align`` · (1 − CKA to the frozen ``partner`` A)."""
        from contextlib import nullcontext

        from reprsim.train import TrainConfig, train
        from reprsim.training.alignment import AlignmentLoss

        if self.partner(unit, side) and partner is None:
            raise ValueError(
                f"unit {unit.unit_id}: model B (align {unit.align:g}) trains against model A; pass partner="
            )
        aligned = (
            AlignmentLoss(model, partner.model, unit.align, pool=self.feature_pool)
            if self.partner(unit, side)
            else nullcontext()
        )
        with aligned as extra_loss:
            result = train(
                model,
                pair.train_set(side),
                TrainConfig.from_dict(unit.train),
                unit.seeds()[f"order_{side}"],
                eval_dataset=pair.eval_set(side),
                checkpoint_dir=checkpoint_dir,
                progress=progress,
                device=device,
                extra_loss=extra_loss,
            )
        info = {
            "train_accuracy": float(result.train_accuracy),
            "eval_accuracy": float(result.eval_accuracy),
            "seconds": float(result.seconds),
        }
        return result.model, info

    def columns(self, pair: PairData, a: Trained, b: Trained) -> dict[str, Any]:
        return {
            "acc_a": a.info["eval_accuracy"],
            "acc_b": b.info["eval_accuracy"],
            "train_acc_a": a.info["train_accuracy"],
            "train_acc_b": b.info["train_accuracy"],
            "attribute_pair": pair.attribute_pair,
        }


class HFImageClassifier(ZooClassifier):
    """A local Hugging Face image model (``hf: /path``) with a new head of the side's classes."""

    name = "hf_image"
    model_kinds = ("hf_image",)

    def build(self, config: ExperimentConfig, unit: Unit, pair: PairData, side: str) -> nn.Module:
        from reprsim.models import pretrained

        x, _ = pair.train_set(side)
        seed, num_classes = unit.seeds()[f"init_{init_side(unit, side)}"], pair.num_classes(side)
        return pretrained.hf_image_classifier(
            unit.model.hf,
            num_classes,
            seed=seed,
            input_size=unit.model.input_size,
            in_channels=int(x.shape[1]) if x.ndim == 4 else None,
        )

    def model_problems(self, config: ExperimentConfig, unit: Unit, pair: PairData) -> list[str]:
        """The folder is there and transformers is installed, then the image models' checks."""
        from reprsim.models.hf_spec import hf_path_problem

        what = f"models.{unit.model.name}"
        problem = hf_path_problem(unit.model.hf)
        if problem:
            return [f"{what}: {problem}"]
        try:
            import transformers  # noqa: F401
        except ImportError:
            return [f"{what}: hf: models need transformers: pip install 'reprsim[hf]'"]
        return super().model_problems(config, unit, pair)
