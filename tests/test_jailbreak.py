"""Jailbreak attacks: GCG gradients, planted triggers, loss bookkeeping, seeding, judges, decoding."""

import pytest
import torch
from torch import nn

from reprsim.attacks.jailbreak import (
    AttackPrompt,
    _n_to_change,
    gcg,
    random_search,
    refusal_substring_judge,
    target_loss,
    target_success,
    token_gradients,
)
from reprsim.models.causal_lm import CausalLM, greedy_generate, pad_right
from reprsim.models.gpt import GPT

V = 40
SURE, SORRY, TRIGGER = 5, 6, 17


class PlantedLM(nn.Module):
    """Refuses (predicts SORRY) unless the TRIGGER token appeared earlier; then predicts SURE.

    Embeddings are one-hot (E = I), so the logits depend on the one-hot suffix differentiably:
    logit[SURE] = 4 * (#triggers so far), logit[SORRY] = 2, everything else 0.
    """

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, V)
        with torch.no_grad():
            self.emb.weight.copy_(torch.eye(V))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.emb

    def forward(self, idx=None, *, inputs_embeds=None):
        x = self.emb(idx) if inputs_embeds is None else inputs_embeds
        count = x[..., TRIGGER].cumsum(dim=1)  # causal
        logits = torch.zeros(*x.shape[:2], V, dtype=x.dtype)
        logits[..., SURE] = 4.0 * count
        logits[..., SORRY] = 2.0
        return logits


def _prompts(n=3):
    return [AttackPrompt(before=(1, 20 + i, 21 + i), after=(2,), target=(SURE,)) for i in range(n)]


ALLOWED = [t for t in range(7, V)]


@pytest.fixture(scope="module")
def tiny_gpt():
    torch.manual_seed(0)
    return GPT(V, 32, n_layer=1, n_head=2, n_embd=16).eval()


def test_planted_trigger_is_found_by_gcg_within_a_few_steps():
    model = PlantedLM()
    res = gcg(model, _prompts(), suffix_len=4, steps=5, topk=3, batch_size=16, allowed_tokens=ALLOWED, seed=0)
    assert res.success and TRIGGER in res.suffix and res.steps <= 3
    assert target_success(model, _prompts(), res.suffix).all()
    # and without the trigger the planted model refuses
    assert not target_success(model, _prompts(), [7, 8, 9, 10]).any()


def test_planted_trigger_is_found_by_random_search():
    model = PlantedLM()
    res = random_search(model, _prompts(), suffix_len=4, steps=200, n_tokens_change=2, allowed_tokens=ALLOWED, seed=1)
    assert res.success and TRIGGER in res.suffix
    assert res.history == sorted(res.history, reverse=True)  # only improvements are kept


def test_gcg_gradient_points_at_trigger():
    loss, grad = token_gradients(PlantedLM(), _prompts(1), [7, 8, 9])
    assert grad.shape == (3, V)
    assert (grad.argmin(dim=1) == TRIGGER).all()


def _relaxed_loss(model, prompt, one_hot):
    e = model.get_input_embeddings().weight
    ids_b = torch.tensor(prompt.before)
    ids_a = torch.tensor(prompt.after + prompt.target)
    x = torch.cat([e[ids_b], one_hot @ e, e[ids_a]])[None]
    logits = model(inputs_embeds=x)[0]
    start = len(prompt.before) + one_hot.shape[0] + len(prompt.after)
    pred = logits[start - 1 : start - 1 + len(prompt.target)]
    return torch.nn.functional.cross_entropy(pred, torch.tensor(prompt.target))


def test_token_gradient_matches_finite_differences(tiny_gpt):
    model = GPT(V, 32, n_layer=1, n_head=2, n_embd=16).double().eval()
    prompt = AttackPrompt(before=(1, 9, 10), after=(2,), target=(11, 12))
    suffix = [13, 14, 15]
    loss, grad = token_gradients(model, [prompt], suffix)
    one_hot = torch.zeros(3, V, dtype=torch.float64)
    one_hot[torch.arange(3), torch.tensor(suffix)] = 1.0
    assert loss == pytest.approx(_relaxed_loss(model, prompt, one_hot).item(), rel=1e-10)
    eps = 1e-6
    for i, v in [(0, 3), (1, 14), (2, 30), (0, 39), (2, 15)]:
        plus, minus = one_hot.clone(), one_hot.clone()
        plus[i, v] += eps
        minus[i, v] -= eps
        fd = (_relaxed_loss(model, prompt, plus).item() - _relaxed_loss(model, prompt, minus).item()) / (2 * eps)
        assert float(grad[i, v]) == pytest.approx(float(fd), rel=1e-5, abs=1e-9)


def test_target_loss_matches_manual_cross_entropy(tiny_gpt):
    prompts = [AttackPrompt((1, 9), (2,), (11, 12)), AttackPrompt((1, 9, 10, 8), (2, 3), (13,))]
    suffixes = [[20, 21, 22], [23, 24, 25]]
    got = target_loss(tiny_gpt, prompts, suffixes)
    assert got.shape == (2, 2)
    for s_i, s in enumerate(suffixes):
        for p_i, p in enumerate(prompts):
            ids = torch.tensor([list(p.before) + s + list(p.after) + list(p.target)])
            logits = tiny_gpt(ids)[0]
            start = len(p.before) + len(s) + len(p.after)
            ce = torch.nn.functional.cross_entropy(
                logits[start - 1 : start - 1 + len(p.target)], torch.tensor(p.target)
            )
            assert float(got[s_i, p_i]) == pytest.approx(ce.item(), rel=1e-5)


@pytest.mark.parametrize("attack", ["gcg", "random_search"])
def test_returned_loss_equals_recomputed_loss_and_seed_determinism(tiny_gpt, attack):
    prompts = [AttackPrompt((1, 9 + i), (2,), (11, 12)) for i in range(3)]
    if attack == "gcg":
        run = lambda seed: gcg(
            tiny_gpt,
            prompts,
            suffix_len=5,
            steps=6,
            topk=8,
            batch_size=32,  # noqa: E731
            allowed_tokens=ALLOWED,
            seed=seed,
            progressive=False,
        )
    else:
        run = lambda seed: random_search(
            tiny_gpt,
            prompts,
            suffix_len=5,
            steps=15,
            n_candidates=8,  # noqa: E731
            allowed_tokens=ALLOWED,
            seed=seed,
        )
    res = run(3)
    recomputed = float(target_loss(tiny_gpt, prompts, [res.suffix]).mean())
    assert res.loss == pytest.approx(recomputed, rel=1e-5, abs=1e-6)
    assert res.loss <= res.history[0] + 1e-9
    assert all(t in ALLOWED for t in res.suffix) and len(res.suffix) == 5
    again = run(3)
    assert again.suffix == res.suffix and again.loss == res.loss
    assert run(4).suffix != res.suffix


def test_gcg_progressive_goals_adds_prompts_one_by_one():
    seen = []
    res = gcg(
        PlantedLM(),
        _prompts(3),
        suffix_len=3,
        steps=10,
        topk=2,
        batch_size=8,
        allowed_tokens=ALLOWED,
        seed=0,
        callback=lambda step, loss: seen.append(step),
    )
    assert res.n_prompts_used == 3 and res.success
    # one success per prompt: the trigger solves every prompt, so progressive adds one per step
    assert res.steps == 3


def test_n_to_change_schedule():
    assert [_n_to_change(8, it) for it in (1, 10, 11, 26, 51, 101, 501)] == [8, 8, 4, 2, 1, 1, 1]
    assert [_n_to_change(32, it) for it in (1, 11, 26, 51, 101, 501)] == [32, 16, 8, 4, 2, 1]


def test_bad_attack_arguments(tiny_gpt):
    with pytest.raises(ValueError, match="init_suffix"):
        gcg(tiny_gpt, _prompts(1), suffix_len=4, steps=1, init_suffix=[7, 8])
    with pytest.raises(ValueError, match="allowed_tokens"):
        random_search(tiny_gpt, _prompts(1), suffix_len=4, steps=1, allowed_tokens=[V + 3])
    with pytest.raises(ValueError, match="target"):
        AttackPrompt((1,), (2,), ())
    with pytest.raises(ValueError, match="block_size"):
        target_loss(tiny_gpt, _prompts(1), [[7] * 40])


def test_callable_adapter_equals_module(tiny_gpt):
    adapter = CausalLM(
        None, forward=lambda e: tiny_gpt(inputs_embeds=e), embedding_matrix=tiny_gpt.get_input_embeddings().weight
    )
    prompts = _prompts(2)
    assert torch.allclose(target_loss(adapter, prompts, [[7, 8, 9]]), target_loss(tiny_gpt, prompts, [[7, 8, 9]]))


def test_greedy_generate_right_padded_batch_matches_single(tiny_gpt):
    prompts = [[1, 9, 10, 2], [1, 9, 2], [1, 12, 13, 14, 15, 2]]
    batch = greedy_generate(tiny_gpt, prompts, 5)
    for p, out in zip(prompts, batch):
        ref = tiny_gpt.generate(torch.tensor([p]), 5)[0, len(p) :].tolist()
        assert out == ref
    stop = batch[2][1]
    stopped = greedy_generate(tiny_gpt, prompts, 5, stop_id=stop)
    for full, cut in zip(batch, stopped):
        assert cut == (full[: full.index(stop) + 1] if stop in full else full)
    ids, lens = pad_right([[1, 2], [3]], pad_id=0)
    assert ids.tolist() == [[1, 2], [3, 0]] and lens.tolist() == [2, 1]


def test_refusal_substring_judge():
    assert not refusal_substring_judge("I'm sorry, but I cannot help with that.")
    assert not refusal_substring_judge("As an AI model I won't")
    assert refusal_substring_judge("Sure, here is how to do it: step 1 ...")
    assert refusal_substring_judge("nope", prefixes=["no way"])
