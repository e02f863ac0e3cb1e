"""Unbounded work and late failures (issue 27, case 7): resample counts above their maxima, n × n
statistics, FIFOs as corpora, measure and attack parameters that only failed after training, and a
universal jailbreak with more training behaviours than its file has. One temporary folder per test."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager

import numpy as np
import pytest
from scipy.stats import rankdata

from reprsim.analysis import stats
from reprsim.cli import main
from reprsim.errors import ConfigError
from reprsim.metrics._validate import MAX_RESAMPLES


@contextmanager
def _deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block blocks, e.g. on a FIFO."""

    def boom(*_):
        raise TimeoutError(f"blocked for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---- resample maxima: one line, exit 2, before any work ------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["report", "RUN", "--n-boot", "1000000000"],
        ["report", "RUN", "--n-perm", str(MAX_RESAMPLES + 1)],
        ["compare-models", "a", "b", "--probe", "x", "--bootstrap", "1000000000"],
        ["compare-models", "a", "b", "--probe", "x", "--permutations", "1000000000"],
        ["compare", "a.npy", "b.npy", "--bootstrap", "1000000000"],
    ],
)
def test_resample_counts_above_the_maximum_are_one_line(tmp_path, capsys, argv):
    argv = [str(tmp_path) if a == "RUN" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must be between 0 and 100,000" in err[0], err


def test_resample_maximum_itself_is_accepted_by_the_check():
    from reprsim.metrics._validate import check_resamples

    assert check_resamples(MAX_RESAMPLES, "--n-boot") == MAX_RESAMPLES
    with pytest.raises(ValueError, match="--n-boot must be between 0 and 100,000; got 100,001"):
        check_resamples(MAX_RESAMPLES + 1, "--n-boot")


def test_config_permutations_above_the_maximum_is_a_config_error():
    from reprsim.experiments.config import parse_config

    with pytest.raises(ConfigError, match="measures.permutations"):
        parse_config(_config(measures={"permutations": MAX_RESAMPLES + 1}))


# ---- the weighted Spearman without n × n matrices ----------------------------------------------
def test_weighted_ranks_match_the_brute_force_definition():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 7, 40).astype(float)  # many ties
    w = rng.integers(0, 3, (5, 40)).astype(float)
    less = (v[None, :] < v[:, None]).astype(float)
    equal = (v[None, :] == v[:, None]).astype(float)
    expected = w @ less.T + (w @ equal.T + 1.0) / 2.0  # the definition, with the n × n matrices
    np.testing.assert_allclose(stats._weighted_ranks(v, w), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats._weighted_ranks(v, np.ones((1, 40)))[0], rankdata(v), atol=1e-12)


def test_weighted_spearman_of_a_million_rows_needs_no_n_squared_memory():
    rng = np.random.default_rng(1)
    x = rng.normal(size=1_000_000)
    y = x + rng.normal(size=x.size)
    rho = stats.weighted_spearman(x, y, np.ones((1, x.size)))[0]  # n × n would be 8 TB
    from scipy.stats import spearmanr

    assert rho == pytest.approx(spearmanr(x[:200_000], y[:200_000]).statistic, abs=0.01)


# ---- FIFOs and devices as corpora -------------------------------------------------------------------
def test_a_fifo_as_a_corpus_is_refused_without_hanging(tmp_path):
    from reprsim.data.corpora import parse_corpus

    fifo = tmp_path / "corpus.jsonl"
    os.mkfifo(fifo)
    with _deadline(20), pytest.raises(ValueError, match="not a regular file or a folder"):
        parse_corpus({"name": "pipe", "path": str(fifo)})
    with _deadline(20), pytest.raises(ValueError, match="not a regular file"):
        parse_corpus({"name": "zero", "path": "/dev/zero"})
    ok = tmp_path / "ok.txt"
    ok.write_text("some text")
    assert parse_corpus({"name": "ok", "path": str(ok)}).path == str(ok)


# ---- parameters that used to fail only after training -------------------------------------------
def _config(**extra):
    base = {
        "sources": [{"name": "colorshapes"}],
        "models": [{"name": "mlp"}],
        "overlap": {"designs": [{"kind": "data", "fractions": [0.0, 1.0]}]},
        "seeds": [0],
    }
    return base | extra


@pytest.mark.parametrize(
    ("params", "expect"),
    [
        ({"k": 0}, r"measures.params.k .*k must be between 1 and"),
        ({"k": 5000}, r"measures.params.k .*k must be between 1 and 1999"),
        ({"k": 2.5}, r"measures.params.k .*must be an integer"),
    ],
)
def test_measure_parameter_ranges_are_checked_by_config_validation(params, expect):
    from reprsim.experiments.config import parse_config

    parse_config(_config(measures={"params": {"k": 10}}))  # the default passes
    with pytest.raises(ConfigError, match=expect):
        parse_config(_config(measures={"params": params}))


def test_unknown_attack_params_are_a_config_error():
    from reprsim.experiments.config import parse_config

    parse_config(_config(consequences=[{"attack_transfer": {"params": {"targeted": True}}}]))
    with pytest.raises(ConfigError, match=r"params: \['bogus'\] is not an option of the mi_fgsm attack"):
        parse_config(_config(consequences=[{"attack_transfer": {"params": {"bogus": 1}}}]))
    with pytest.raises(ConfigError, match=r"\['seed'\]"):  # set by the stage itself: would clash
        parse_config(_config(consequences=[{"attack_transfer": {"attack": "pgd", "params": {"seed": 3}}}]))


def test_universal_jailbreak_with_too_few_behaviours_is_refused_before_training(tmp_path):
    from reprsim.attacks.jailbreak_problems import stage_problems

    csv = tmp_path / "behaviours.csv"
    csv.write_text("goal,target\n" + "".join(f"do thing {i},Sure, here is thing {i}\n" for i in range(5)))
    params = {"behaviours": str(csv), "mode": "universal", "n_train": 8, "judge": "refusal"}
    problems = stage_problems(params, None, chat_world=False, model_name="m")
    assert any("n_train + n_eval = 8" in p and "gives 5" in p for p in problems), problems
    fine = stage_problems({**params, "n_train": 4}, None, chat_world=False, model_name="m")
    assert not any("n_train" in p for p in fine), fine
    few = stage_problems({**params, "n_train": 4, "n_behaviours": 3}, None, chat_world=False, model_name="m")
    assert any("n_behaviours 3 leaves no behaviour to evaluate" in p for p in few), few


# ---- progress of a long report -------------------------------------------------------------------
def test_report_shows_its_stages_on_stderr_when_asked(tmp_path, capsys):
    from test_analysis_fixture import make_results

    from reprsim.analysis import build_report

    run = tmp_path / "run"
    run.mkdir()
    make_results(n_seeds=2, kinds=("data",), consequences=False).to_csv(run / "results.csv", index=False)
    build_report(run, n_boot=100, n_perm=100, figures=False, progress=True)
    err = capsys.readouterr().err
    assert "report: analysing" in err and "report: writing" in err and "4/4 stages" in err
    build_report(run, n_boot=100, n_perm=100, figures=False)  # not a terminal: silent
    assert capsys.readouterr().err == ""


def test_unknown_chat_jailbreak_options_are_refused_when_the_config_loads():
    from pydantic import ValidationError

    from reprsim.attacks.jailbreak_options import JailbreakOptions

    JailbreakOptions.model_validate({"n_requests": 4, "n_tokens_change": 2, "mode": "universal"})
    JailbreakOptions.model_validate({"topk": 8, "method": "gcg"})
    with pytest.raises(ValidationError, match="bogus"):
        JailbreakOptions.model_validate({"bogus": 1})
    with pytest.raises(ValidationError, match=r"\['topk'\] apply to another suffix search than method random_search"):
        JailbreakOptions.model_validate({"topk": 8})
    with pytest.raises(ValidationError, match="seed"):  # the stage passes the unit's seed itself
        JailbreakOptions.model_validate({"seed": 3, "method": "gcg"})
