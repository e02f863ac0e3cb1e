"""The offline CPU demo bases: small Llamas built from a ``LlamaConfig`` and saved as Hugging Face folders.

The ``hf_lm`` family's base-model pre-training step (:mod:`reprsim.experiments.families.hf_lm`).

``models: [{hf: demo}]`` runs the same code path as a local Llama: reprsim builds the base once,
saves it with ``save_pretrained`` (model, tokenizer, chat template) under
``<cache>/llm_bases/<key>/`` and from then on loads it like any local model folder.

* **text** source (:func:`text_base`): a byte-level BPE (``tokenizers``) trained on the training
  parts of the source's domains, then a Llama pre-trained briefly (``DemoRecipe.steps``) on windows
  of all of them (every domain cut to the shortest one's length). The validation parts are never seen.
* **chat** source (:func:`chat_base`): a word-level tokenizer whose ids are the chat world's, with a
  chat template ``<user> … <assistant>``, and a Llama trained two-phase on the world's base pool
  (pre-training, then safety tuning: forbidden requests → refusal) with the config's chat recipe —
  the chat world's shared base, as an HF model.

Both are deterministic (same options, same files) and built under a file lock, so two workers
never build the same base twice (the others wait for it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from reprsim.models.hf_spec import DemoRecipe

if TYPE_CHECKING:
    from reprsim.chat import ChatWorld
    from reprsim.chat.training import ChatRecipe
    from reprsim.data.token_windows import TextOptions

__all__ = ["chat_base", "chat_key", "chat_tokenizer", "text_base", "text_key", "text_tokenizer"]

EOT = "<|endoftext|>"
INFO_FILE = "reprsim_demo.json"
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}<user> {{ message['content'] }} "
    "{% elif message['role'] == 'assistant' %}<assistant> {{ message['content'] }} <end> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def _content_key(obj: Any) -> str:
    from reprsim.hashing import content_hash

    return content_hash(obj, 16)


# ---- tokenizers -----------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _text_tokenizer(corpora: tuple, max_bytes: int | None, val_fraction: float, vocab_size: int) -> Any:
    from transformers import PreTrainedTokenizerFast

    from reprsim.data.corpora import corpus_split_texts, train_bpe

    texts = [t for c in corpora for t in corpus_split_texts(c, max_bytes, val_fraction)[0]]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(texts, vocab_size, (EOT,)),
        eos_token=EOT,
        bos_token=EOT,
        pad_token=EOT,
        unk_token=None,
    )
    return tok


def text_tokenizer(opts: TextOptions, recipe: DemoRecipe) -> Any:
    """The text demo base's tokenizer (a ``PreTrainedTokenizerFast``), trained in memory: the same one
    the built base carries (training is deterministic)."""
    return _text_tokenizer(opts.corpora, opts.max_bytes, opts.val_fraction, recipe.vocab_size)


def chat_tokenizer(world: ChatWorld) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` whose ids are ``world``'s token ids, with a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from reprsim.chat.world import SPECIAL_TOKENS

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(world.vocab)}, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    out = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<end>", unk_token=None)
    out.chat_template = CHAT_TEMPLATE
    return out


# ---- keys -----------------------------------------------------------------------------------
def text_key(opts: TextOptions, recipe: DemoRecipe) -> str:
    """The cache key of the text demo base: its recipe and the text it is trained on."""
    return "text-" + _content_key(
        {
            "recipe": recipe.to_dict(),
            "corpora": [c.identity() for c in opts.corpora],
            "max_bytes": opts.max_bytes,
            "val_fraction": opts.val_fraction,
            "version": 1,
        }
    )


def chat_key(world: ChatWorld, recipe: DemoRecipe, chat: ChatRecipe) -> str:
    """The cache key of the chat demo base: its architecture, the world and the base fields of the chat recipe."""
    arch = {
        k: v for k, v in recipe.to_dict().items() if k in ("hidden_size", "n_layers", "n_heads", "intermediate_size")
    }
    return "chat-" + _content_key({"arch": arch, "world": world.config(), "recipe": chat.base_fields(), "version": 1})


# ---- building -------------------------------------------------------------------------------
def _llama(recipe: DemoRecipe, vocab_size: int, max_positions: int, special: dict[str, int], seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=recipe.hidden_size,
        num_hidden_layers=recipe.n_layers,
        num_attention_heads=recipe.n_heads,
        num_key_value_heads=recipe.n_heads,
        intermediate_size=recipe.intermediate_size,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        **special,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


@contextlib.contextmanager
def _building(folder: Path) -> Iterator[Path | None]:
    """Hold the base's lock; yield a fresh temporary folder to build in, or None when ``folder`` exists."""
    from reprsim.storage import key_lock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with key_lock(folder):
        if (folder / INFO_FILE).is_file():
            yield None
            return
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            yield tmp
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _save(model: torch.nn.Module, tokenizer: Any, folder: Path, info: dict[str, Any]) -> None:
    from reprsim.models.hf_lm import quiet_transformers

    with quiet_transformers():
        model.save_pretrained(str(folder), safe_serialization=True)
        tokenizer.save_pretrained(str(folder))
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2))


def text_base(
    opts: TextOptions, recipe: DemoRecipe, cache_dir: Path, device: torch.device, progress: bool = False
) -> Path:
    """The folder of the text demo base for ``opts`` (built and saved on first use)."""
    from reprsim.data.token_windows import corpus_stream
    from reprsim.models.lora import FineTunedLM
    from reprsim.train import TrainConfig, train

    folder = Path(cache_dir) / "llm_bases" / text_key(opts, recipe)
    with _building(folder) as tmp:
        if tmp is None:
            return folder
        tok = text_tokenizer(opts, recipe)
        from reprsim.data.corpora import PretrainedTokenizer

        wrapped = PretrainedTokenizer(tok, "demo")
        streams = [corpus_stream(opts, d, wrapped)[0] for d in opts.domains]
        shortest = min(len(s) for s in streams)
        docs = [np.asarray(s[:shortest], dtype=np.int64) for s in streams]
        eot = tok.convert_tokens_to_ids(EOT)
        model = _llama(
            recipe,
            len(tok),
            2 * recipe.block_size,
            {"bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot},
            recipe.seed,
        )
        cfg = TrainConfig(
            optimizer="adamw",
            lr=recipe.lr,
            betas=(0.9, 0.95),
            weight_decay=0.1,
            schedule="cosine",
            min_lr_ratio=0.1,
            warmup_steps=min(100, recipe.steps // 10),
            grad_clip=1.0,
            batch_size=recipe.batch_size,
            block_size=recipe.block_size,
            max_steps=recipe.steps,
            eval_interval=recipe.steps,
        )
        result = train(
            FineTunedLM(model, full=True),
            docs,
            cfg,
            recipe.seed,
            checkpoint_dir=tmp.parent / f"{folder.name}.ckpt",
            progress=progress,
            device=device,
        )
        model = result.model.hf_model.cpu()
        _save(
            model,
            tok,
            tmp,
            {
                "kind": "text",
                "recipe": recipe.to_dict(),
                "domains": list(opts.domains),
                "train_loss": result.history[-1]["train_loss"],
                "seconds": result.seconds,
            },
        )
        shutil.rmtree(tmp.parent / f"{folder.name}.ckpt", ignore_errors=True)
    return folder


def chat_base(
    world: ChatWorld,
    recipe: DemoRecipe,
    chat: ChatRecipe,
    cache_dir: Path,
    device: torch.device,
    progress: bool = False,
) -> Path:
    """The folder of the chat demo base for ``world`` (trained two-phase on the base pool on first use)."""
    from reprsim.chat.training import base_pools, evaluate_chat_model, train_two_phase
    from reprsim.models.lora import FineTunedLM

    folder = Path(cache_dir) / "llm_bases" / chat_key(world, recipe, chat)
    with _building(folder) as tmp:
        if tmp is None:
            return folder
        tok = chat_tokenizer(world)
        model = _llama(
            recipe,
            world.vocab_size,
            max(128, 2 * chat.block_size),
            {"bos_token_id": world.user_id, "eos_token_id": world.end_id, "pad_token_id": world.pad_id},
            chat.base_seed,
        )
        pool, heldout = base_pools(world, chat)
        wrapped = FineTunedLM(model, full=True)
        ckpt = tmp.parent / f"{folder.name}.ckpt"
        history = train_two_phase(
            wrapped, world, pool, chat, seed=chat.base_seed, checkpoint_dir=ckpt, device=device, progress=progress
        )
        scores = evaluate_chat_model(wrapped, world, heldout)
        _save(
            wrapped.hf_model.cpu(),
            tok,
            tmp,
            {
                "kind": "chat",
                "recipe": recipe.to_dict(),
                "world": world.config(),
                "history": history,
                "heldout": scores,
            },
        )
        shutil.rmtree(ckpt, ignore_errors=True)
    return folder


def base_info(folder: Path) -> dict[str, Any]:
    """What the demo base recorded when it was built (recipe, losses, held-out scores)."""
    return json.loads((Path(folder) / INFO_FILE).read_text())
