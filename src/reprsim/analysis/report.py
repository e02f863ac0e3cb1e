"""The report of one run or several: ``report.html`` (self-contained: inline CSS, images as base64),
``report.md`` (the same tables), ``summary.json`` and the figures under ``figures/``.

It reads like a results section: per claim a one-line answer and one compact table per group
(source × model × overlap kind, never pooled) coloured by verdict, with its figure; a Methods
section generated from the config; the long per-cell tables folded away in ``<details>``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from reprsim.analysis import plots, stats
from reprsim.analysis import tables as tb
from reprsim.analysis.cells import GROUP_AXES, PrimaryFamily, headline_layer_mask
from reprsim.analysis.document import (
    Bullets,
    Details,
    Figure,
    Heading,
    Legend,
    Para,
    Pre,
    Table,
    to_html,
    to_markdown,
)
from reprsim.analysis.effects import DEFAULT_N_PERM
from reprsim.analysis.families import GROUPING
from reprsim.analysis.load import (
    Run,
    check_table,
    clean_results,
    load_runs,
    missing_columns,
    prepare,
)
from reprsim.analysis.methods import methods_paragraphs
from reprsim.analysis.paired import load_paired, paired_summary, paired_table_rows
from reprsim.analysis.report_folder import remove_old_figures, report_folder
from reprsim.analysis.summary import jsonable, summarize
from reprsim.analysis.text import design_label, kind_label, measure_label
from reprsim.errors import ReprsimError
from reprsim.metrics._validate import check_resamples
from reprsim.results import REPORT_HTML, REPORT_MD, SAMPLE_FILES, SUMMARY_FILE, UNITS_DIR
from reprsim.safe_paths import path_name_problem
from reprsim.storage import atomic_write_bytes

__all__ = ["FORMATS", "build_report"]

FORMATS = ("html", "md")
_LINK_HEADLINE = ("transfer_asr", "transfer_asr_ba", "jailbreak_transfer_asr", "jailbreak_transfer_asr_ba")
_STAT_LABELS = {
    "unit": "Unit of inference",
    "effect": "Effect",
    "correction": "Multiple testing",
    "verdict": "Verdict",
    "effect_sd": "Normalised effect",
    "r2": "R²",
    "spearman": "Rank correlation",
    "mutual_information": "Mutual information",
    "factorial": "Factorial design",
    "consequences": "Consequences",
    "links": "Similarity vs transfer, pooled",
    "similarity_transfer": "Similarity → transfer",
    "fit_range": "Fit range of fixed class subsets",
    "calibrated": "Calibrated effects",
    "behavioural": "Behavioural effects",
    "best_layers": "Best layer pair",
    "best_layers_selected": "Best layer pair (selected here)",
}


def _frame(records: Any) -> pd.DataFrame:
    return pd.DataFrame(records) if records else pd.DataFrame()


def _sentence(text: str) -> str:
    """``text`` as a sentence: first letter upper-cased (the rest kept: names, Holm), full stop."""
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def _primary(runs: list[Run]) -> tuple[PrimaryFamily, list[dict[str, str]]]:
    families = [PrimaryFamily.from_config(r.config) for r in runs]
    declared = [f for f in families if f.source == "config.yaml"]
    chosen = declared[0] if declared else families[0]
    notes = []
    if len({(f.measures, f.probe_sets) for f in families}) > 1:
        notes.append(
            {"scope": "table", "reason": f"the runs declare different primary families; using {chosen.describe()}"}
        )
    return chosen, notes


def _own_file(folder: Path, name: str) -> Path | None:
    """``folder/name`` when it is a regular file and neither it nor ``folder`` is a symlink (sample
    grids are read from inside the run folder only, never through a planted link)."""
    path = folder / name
    try:
        if stat.S_ISLNK(os.lstat(folder).st_mode) or not stat.S_ISREG(os.lstat(path).st_mode):
            return None
    except OSError:
        return None
    return path


def _sample_caption(folder: Path, side: str) -> str:
    """What the rows of a unit's sample grid are (from its ``samples.json``)."""
    path = _own_file(folder, SAMPLE_FILES["rows"])
    try:
        info = json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError, RecursionError):
        info = None
    if not isinstance(info, dict):
        return "one row per class of the model"
    return (
        f"one row per class ({', '.join(map(str, info.get(side, [])))}), {info.get('per_class')} samples each: "
        f"DDIM, {info.get('steps')} steps, guidance {info.get('guidance_scale')}, noise seed {info.get('seed')} "
        "(the same for both models)"
    )


class _Builder:
    """Collects report blocks and figures for one analysed table."""

    def __init__(
        self,
        summary: dict[str, Any],
        data: pd.DataFrame,
        raw: pd.DataFrame,
        fig_dir: Path,
        primary: PrimaryFamily,
        draw: bool = True,
        unit_dirs: dict[str, Path] | None = None,
    ):
        self.s, self.data, self.raw, self.fig_dir, self.primary = summary, data, raw, fig_dir, primary
        self.draw, self.unit_dirs = draw, unit_dirs or {}
        self.effects = _frame(summary["overlap_effects"])
        self.figures: list[dict[str, str]] = []
        self.measures = [m for m in primary.measures if m in set(self.data["measure"])]

    def plot(self, fn: Any, *args: Any) -> Path | None:
        """``fn(*args)`` (a :mod:`reprsim.analysis.plots` function), or nothing when not drawing."""
        return fn(*args) if self.draw else None

    def figure(self, path: Path | None, title: str, caption: str, section: str) -> list:
        if path is None:
            return []
        self.figures.append({"section": section, "title": title, "png": str(path), "caption": caption})
        return [Figure(path, title, caption)]

    def _rows(self, keys: dict[str, Any]) -> pd.DataFrame:
        return tb.match(self.data, keys)

    def effect_claim(self, claim: dict[str, Any]) -> list:
        blocks: list = []
        for group in claim["groups"]:
            keys, heads = group["keys"], group["headline_probe_sets"]
            rows = tb.match(self.effects, keys)
            prim = rows[rows["family"] == "primary"]
            others = rows[rows["family"] != "primary"]
            probes = heads + sorted(set(rows["probe_set"]) - set(heads))
            blocks += [Heading(tb.kind_title(keys), 3), Para(group["summary"], "summary")]
            blocks.append(tb.effect_table(prim if not prim.empty else rows, self.measures, probes))
            name = plots.slug("overlap", *(keys.get(k) for k in GROUP_AXES))
            title = f"Similarity vs {design_label(keys)} ({tb.kind_title(keys).split(' — ')[1]})"
            measures = self.measures or sorted(set(rows["measure"]))[:3]
            blocks += self.figure(
                self.plot(plots.plot_overlap, self._rows(keys), measures, probes, title, self.fig_dir, name),
                f"Similarity vs {design_label(keys)}",
                "Per primary measure: box plots over seeds at each fraction, probe sets side by side; lines join "
                "the means. Probe sets whose composition varies with the fraction are in the table's labels.",
                claim["id"],
            )
            if not others.empty:
                blocks.append(
                    Details(
                        f"Exploratory measures of this group ({others['measure'].nunique()} measures, unadjusted p)",
                        [tb.effect_table(others, sorted(set(others["measure"])), probes)],
                    )
                )
            every = tb.match(
                _frame(self.s["overlap_effects"]), {k: v for k, v in keys.items() if k not in ("layer_a", "layer_b")}
            )
            if every["layer_a"].nunique() > 1 or every["layer_b"].nunique() > 1:
                blocks.append(
                    Details(
                        f"Every cell of this group ({len(every)}: all measures, probe sets and layer pairs)",
                        [tb.cell_table(every)],
                    )
                )
        return blocks

    def combined_claim(self, claim: dict[str, Any]) -> list:
        blocks: list = []
        fac = _frame(self.s["combined"]["interaction"])
        for group in claim["groups"]:
            keys = group["keys"]
            rows = tb.match(fac, keys)
            prim = rows[rows["family"] == "primary"]
            blocks += [
                Heading(tb.kind_title(keys), 3),
                Para(group["summary"], "summary"),
                tb.factorial_table(prim if not prim.empty else rows, self.measures),
            ]
            probe = str((prim if not prim.empty else rows)["probe_set"].iloc[0])
            name = plots.slug("factorial", *(keys.get(k) for k in ("run", "source", "model")))
            title = f"Factorial design ({tb.kind_title(keys).split(' — ')[1]})"
            measures = self.measures or sorted(set(rows["measure"]))[:3]
            blocks += self.figure(
                self.plot(plots.plot_factorial, self._rows(keys), measures, probe, title, self.fig_dir, name),
                "Factorial design: interaction plot",
                "Mean similarity in the four cells; parallel lines mean no interaction, a steeper 'images shared' "
                "line means combining adds more than the sum of its parts.",
                claim["id"],
            )
            if len(prim) < len(rows):
                blocks.append(
                    Details(
                        "Exploratory measures and layer pairs of the factorial design",
                        [tb.factorial_table(rows[rows["family"] != "primary"], sorted(set(rows["measure"])))],
                    )
                )
        grid = _frame(self.s["combined"]["grid"])
        if not grid.empty:
            head = tb.match(self.data, {"overlap_kind": "combined"})
            head = head[headline_layer_mask(head)].drop_duplicates(["layer_a", "layer_b"])
            grid = grid.merge(head[["layer_a", "layer_b"]], on=["layer_a", "layer_b"])
            blocks += [
                Heading("Combined data × task grid (per-seed fits)", 3),
                Para(
                    "Gains over the (min, min) corner of the grid, each a mean over seeds with a t interval; "
                    "the interaction coefficient is the mean of per-seed OLS fits value ~ d + t + d·t.",
                    "note",
                ),
            ]
            group_keys = [k for k in ("run", "source", "model", "layer_a", "layer_b") if k in grid]
            for key, g in grid.groupby(group_keys, sort=False):
                keys = dict(zip(group_keys, key if isinstance(key, tuple) else (key,)))
                blocks += [
                    Heading(tb.kind_title({**keys, "overlap_kind": "combined"}), 4),
                    tb.grid_table(g, self.measures),
                ]
                probe = str(g["probe_set"].iloc[0])
                rows = self._rows({**keys, "overlap_kind": "combined"})
                name = plots.slug("grid", *keys.values())
                title = f"Mean similarity on the data × task grid ('{probe}')"
                measures = self.measures or sorted(set(g["measure"]))[:3]
                blocks += self.figure(
                    self.plot(plots.plot_grid_heatmap, rows, measures, probe, title, self.fig_dir, name),
                    "Data × task grid",
                    "Mean similarity per grid cell (over seeds).",
                    claim["id"],
                )
        return blocks

    def consequence_claim(self, claim: dict[str, Any]) -> list:
        blocks: list = []
        cons = self.s["consequences"]
        eff, byf, links = _frame(cons["effects"]), _frame(cons["by_fraction"]), _frame(cons["links"])
        transfer = _frame(self.s.get("similarity_transfer"))
        if claim.get("similarity_transfer"):
            blocks += [
                Heading("Similarity → transfer through two causes of similarity", 3),
                Bullets([g["summary"] for g in claim["similarity_transfer"]]),
            ]
            prim = transfer[transfer["family"] == "primary"]
            blocks.append(tb.similarity_transfer_table(prim))
            if len(prim) < len(transfer):
                blocks.append(
                    Details(
                        f"Every similarity → transfer record ({len(transfer)})",
                        [tb.similarity_transfer_table(transfer)],
                    )
                )
        for group in claim["groups"]:
            keys = group["keys"]
            unit_keys = {k: v for k, v in keys.items() if k not in ("layer_a", "layer_b")}
            blocks += [Heading(tb.kind_title(keys), 3), Para(group["summary"], "summary")]
            blocks += tb.consequence_tables(tb.match(eff, unit_keys), tb.match(byf, unit_keys))
            lk = tb.match(links, keys)
            if not lk.empty:
                heads = group["headline_probe_sets"]
                roles = lk.drop_duplicates("probe_set").set_index("probe_set")["probe_role"]
                shared = [p for r in ("common_fixed", "common") for p in roles.index[roles == r] if p not in heads]
                prim = lk[
                    lk["measure"].isin(self.measures or list(lk["measure"]))
                    & lk["probe_set"].isin(heads + shared[:1])
                    & lk["consequence"].isin(_LINK_HEADLINE)
                ]
                blocks.append(
                    Para(
                        "Similarity vs transfer pooled over fractions: descriptive only — overlap drives "
                        "both, so this correlation cannot say whether similarity carries transfer (see "
                        "the two-cause estimates above).",
                        "note",
                    )
                )
                blocks.append(tb.link_table(prim, self.measures, heads + shared[:1]))
                column = next((c for c in ("transfer_asr", "jailbreak_transfer_asr") if c in self.data), None)
                if self.measures and heads and column is not None:
                    cell = {**keys, "measure": self.measures[0], "probe_set": heads[0]}
                    units = tb.match(self.data, cell)
                    name = plots.slug("link", *(keys.get(k) for k in GROUP_AXES))
                    xlabel = f"{measure_label(self.measures[0])} ('{heads[0]}')"
                    title = f"Transfer vs similarity, {design_label(keys)}"
                    blocks += self.figure(
                        self.plot(plots.plot_link, units, column, xlabel, title, self.fig_dir, name),
                        "Transfer success vs similarity",
                        "One point per model pair, coloured by overlap fraction; lines are fits within a fraction.",
                        claim["id"],
                    )
                if len(prim) < len(lk):
                    blocks.append(
                        Details(
                            f"All similarity → transfer links of this group ({len(lk)})",
                            [tb.link_table(lk, sorted(set(lk["measure"])), heads)],
                        )
                    )
        for keys, g in (
            byf.groupby([k for k in ("run", "source", "model") if k in byf], sort=False) if not byf.empty else []
        ):
            keys = keys if isinstance(keys, tuple) else (keys,)
            kinds = list(dict.fromkeys(g["overlap_kind"]))
            title = f"Attack success vs overlap ({' · '.join(map(str, keys))})"
            path = self.plot(plots.plot_consequences, g, kinds, title, self.fig_dir, plots.slug("consequences", *keys))
            blocks += self.figure(
                path,
                "Attack success vs overlap",
                "White-box success (control) next to transfer "
                "success and P(victim fooled | source fooled); mean ± between-seed SD.",
                claim["id"],
            )
        return blocks

    def secondary(self) -> list:
        """The calibrated and behavioural effect sections, each only when the summary has it."""
        from reprsim.metrics.behavioural import BEHAVIOURAL

        stats = self.s["statistics"]
        sections = [
            (
                "calibrated_effects",
                "Calibrated similarity vs overlap",
                "calibrated",
                "The same per-seed effects on each headline measure's calibrated score (0 = no more similar than the "
                "permutation null's threshold τ, 1 = the value of identical inputs), beside the raw effects. "
                f"{_sentence(stats.get('calibrated', ''))}",
                lambda keys, g: tb.calibrated_table(tb.match(self.effects, keys), g, self.measures),
            ),
            (
                "behavioural_effects",
                "Behavioural similarity vs overlap",
                "behavioural",
                "Does overlap make the models behave alike? The effect of the overlap fraction on how alike the two "
                "models' outputs are on the probe inputs (JS divergence: lower = more alike). "
                f"{_sentence(stats.get('behavioural', ''))}",
                lambda keys, g: tb.effect_table(g, list(BEHAVIOURAL), sorted(set(g["probe_set"]))),
            ),
        ]
        blocks: list = []
        for key, title, anchor, note, table in sections:
            frame = _frame(self.s.get(key))
            if frame.empty:
                continue
            blocks += [Heading(title, 2, anchor), Para(note, "note"), Legend()]
            for keys, g in tb.design_groups(frame):
                blocks += [Heading(tb.kind_title(keys), 3), table(keys, g)]
        return blocks + self.paired()

    def paired(self) -> list:
        """The paired-differences section (only when the run's sweep wrote ``paired.csv``)."""
        frame = _frame(self.s.get("paired_differences"))
        if frame.empty:
            return []
        header, rows, verdicts = paired_table_rows(frame)
        note = (
            "Within each seed, the pair at the highest overlap vs the pair at the lowest, on the same probe inputs "
            "(only probe sets whose inputs are identical at both fractions), at the headline layer: value₁ − value₂ "
            "with a paired bootstrap over the inputs (paired.csv). Per design arm, probe set and measure (never "
            "pooled): the mean difference over seeds with a t interval over the seeds' differences (the seed is the "
            "unit), how many seeds' own bootstrap intervals exclude 0, and their median width. Exploratory "
            "(not in the Holm primary family); an interval containing 0 is inconclusive, not evidence of no effect."
        )
        css = {"higher": "more", "lower": "less"}
        table = Table(header, rows, [css.get(v, "inconclusive") for v in verdicts], left=4)
        return [Heading("Paired differences on shared inputs", 2, "paired_differences"), Para(note, "note"), table]

    def details(self) -> list:
        blocks: list = [Heading("Details", 2, "details")]
        if self.s["problems"]:
            blocks.append(
                Details(
                    f"What could not be tested ({len(self.s['problems'])} reasons)",
                    [tb.problems_table(self.s["problems"])],
                )
            )
        choice = self._layer_choice()
        if choice is not None:
            path = self.plot(plots.plot_layer_heatmap, self.raw, *choice, self.fig_dir)
            caption = f"Every computed layer pair of unit {choice[0]} ({choice[1]}, probe set '{choice[2]}')."
            fig = self.figure(path, "Layer × layer similarity", caption, "layers")
            if fig:
                blocks.append(Details("Layer pairs", fig))
        blocks += self.samples()
        acc = _frame(self.s["accuracy"])
        fig = self.figure(
            self.plot(plots.plot_accuracy, acc, self.fig_dir),
            "Accuracy vs overlap",
            "Mean test accuracy of the two models (± between-seed SD): if accuracy is flat while "
            "similarity rises, accuracy does not explain the effect.",
            "accuracy",
        )
        if fig:
            blocks.append(Details("Accuracy", fig))
        return blocks

    def samples(self) -> list:
        """The sample grids of both models of one pair per overlap point (its lowest seed with grids):
        generative models (diffusion) show whether they learned anything at all."""
        keys = ["source", "model", "overlap_kind", "x"]
        units = self.data.drop_duplicates("unit_id").sort_values([*keys, "seed"], kind="stable")
        figures: list = []
        for _, group in units.groupby(keys, sort=False):
            for row in group.itertuples():
                folder = self.unit_dirs.get(row.unit_id)
                if folder is None or not all(_own_file(folder, SAMPLE_FILES[side]) for side in "ab"):
                    continue
                point = f"{row.source} · {row.model} · {kind_label(row.overlap_kind)} {row.x:g} · seed {row.seed}"
                figures += [
                    Figure(folder / SAMPLE_FILES[side], f"{point}: model {side.upper()}", _sample_caption(folder, side))
                    for side in "ab"
                ]
                break
        if not figures:
            return []
        return [
            Details(f"Samples of the generative models ({len(figures) // 2} pairs, one per overlap point)", figures)
        ]

    def _layer_choice(self) -> tuple[str, str, str] | None:
        counts = self.raw.groupby(["unit_id", "measure", "probe_set"], sort=False).size()
        counts = counts[counts >= 2]
        if counts.empty:
            return None
        cand = counts[counts == counts.max()].reset_index()
        cand["_pref"] = (cand["measure"] != (self.measures[0] if self.measures else "cka")).astype(int)
        row = cand.sort_values("_pref", kind="stable").iloc[0]
        return str(row["unit_id"]), str(row["measure"]), str(row["probe_set"])


def _document(
    summary: dict[str, Any], builder: _Builder | None, configs: list[dict], provenance: Any, methods: list[str]
) -> list:
    s = summary
    blocks: list = []
    if s["status"] != "ok":
        blocks += [
            Heading("Not analysed", 2),
            *[Para(p["reason"], "summary") for p in s["problems"]],
            Para("Fix the table (see the reason above) and run `reprsim report` again.", "note"),
        ]
    else:
        blocks.append(
            Para(
                f"{s['n_units']} model pairs, {s['n_seeds']} seed{'s' if s['n_seeds'] != 1 else ''}, "
                f"{s['n_rows']} results rows; overlap kinds: "
                f"{', '.join(s['overlap_kinds'])}; layer selection: {', '.join(s['layer_selection'])}. "
                f"Primary family: {builder.primary.describe()} ({s['analysis']['family_size']} tests, Holm; "
                f"declared in {s['analysis']['primary']['declared_in']}).",
                "note",
            )
        )
        blocks.append(Heading("Findings", 2, "findings"))
        blocks += [Para(f"{c['title']} {c['summary']}", "summary") for c in s["claims"]]
        blocks += [
            Heading("Methods", 2, "methods"),
            *[Para(p) for p in methods],
            Bullets([f"{_STAT_LABELS.get(k, k)}: {v}." for k, v in s["statistics"].items()]),
        ]
        for claim in s["claims"]:
            blocks += [Heading(claim["title"], 2, claim["id"]), Para(claim["summary"], "summary")]
            if claim["groups"] or (claim["id"] == "combined" and s["combined"]["grid"]):
                blocks.append(Legend())
            if claim["id"] in ("data", "task"):
                blocks += builder.effect_claim(claim)
            elif claim["id"] == "combined":
                blocks += builder.combined_claim(claim)
            else:
                blocks += builder.consequence_claim(claim)
        blocks += builder.secondary()
        fam = s["families"]["rows"]
        if fam:
            blocks += [
                Heading("Across overlap groups (the paper's cross-family table)", 2, "families"),
                Para(GROUPING, "note"),
                tb.family_table(fam),
            ]
        blocks += builder.details()
    for i, config in enumerate(configs):
        blocks.append(
            Details(
                f"Config{f' {i + 1}' if len(configs) > 1 else ''}",
                [Pre(yaml.safe_dump(config, sort_keys=False) if config else "(no config.yaml)")],
            )
        )
    blocks.append(Details("Provenance", [Pre(json.dumps(provenance, indent=2, default=str))]))
    return blocks


def build_report(
    run_dir: str | Path | list[str | Path],
    format: str = "html",
    *,
    out: str | Path | None = None,
    layers: str = "default",
    n_boot: int = stats.DEFAULT_N_BOOT,
    n_perm: int = DEFAULT_N_PERM,
    seed: int = stats.DEFAULT_SEED,
    figures: bool = True,
    progress: bool | None = None,
) -> Path:
    """Analyse one run folder (or several together) and write its report.

    Writes ``report.html``, ``report.md`` (the same tables), ``summary.json`` and ``figures/`` into
    ``out`` (default: the run folder; required when several folders are given). A folder may hold
    only a ``results.parquet`` / ``results.csv`` with the contract columns. ``figures=False`` skips
    drawing (the tables and numbers are the same). A table that cannot be
    analysed (missing columns, no usable row) still gets a report and a summary stating why
    (``summary.json``'s ``status`` is then ``"not analysed"``). ``out`` must be new, empty, a run
    folder or a report folder reprsim made (see :mod:`reprsim.analysis.report_folder`); the table is
    checked first (:func:`reprsim.analysis.load.check_table`). ``progress``: a bar of the report's
    stages on stderr (None: only when stderr is a terminal).

    Returns
    -------
    pathlib.Path of ``report.html`` (``format="html"``) or ``report.md`` (``format="md"``).
    """
    if format not in FORMATS:
        raise ValueError(f"report format must be one of {list(FORMATS)}, got {format!r}.")
    check_resamples(n_boot, "n_boot")
    check_resamples(n_perm, "n_perm")
    dirs = list(run_dir) if isinstance(run_dir, (list, tuple)) else [run_dir]
    if len(dirs) > 1 and out is None:
        raise ReprsimError("several run folders are analysed together: give --out DIR for the combined report")
    bar = _stages(progress)
    runs = load_runs(dirs)
    root = report_folder(out, runs)
    remove_old_figures(root)
    table = pd.concat([r.table for r in runs], ignore_index=True) if len(runs) > 1 else runs[0].table
    table, checked = check_table(table)
    primary, notes = _primary(runs)
    bar.update(1)
    bar.set_description(f"report: analysing {len(table):,} rows")
    summary = summarize(table, primary=primary, layers=layers, n_boot=n_boot, n_perm=n_perm, seed=seed)
    bar.update(1)
    bar.set_description("report: tables and figures")
    summary["problems"] = notes + checked + summary["problems"]
    paired = paired_summary(load_paired(runs))
    if summary["status"] == "ok" and not paired.empty:  # only runs whose sweep wrote paired.csv
        summary["paired_differences"] = jsonable(paired)
    builder, methods = None, []
    if summary["status"] == "ok" and not missing_columns(table):
        data = prepare(table, layers)
        unit_dirs = _unit_dirs(runs)
        builder = _Builder(summary, data, clean_results(table), root / "figures", primary, figures, unit_dirs)
        together = (
            None
            if len(runs) == 1
            else (
                f"{len(runs)} runs analysed together ({', '.join(r.name for r in runs)}); the run is a cell axis, so "
                "nothing is pooled across runs, and each run's config is listed at the end."
            )
        )
        methods = methods_paragraphs(runs[0].config if len(runs) == 1 else {}, data, summary, together=together)
    configs = [r.config for r in runs]
    provenance = [r.provenance for r in runs] if len(runs) > 1 else runs[0].provenance
    blocks = _document(summary, builder, configs, provenance, methods)
    bar.update(1)
    bar.set_description("report: writing")
    summary["figures"] = [
        {**f, "png": Path(f["png"]).resolve().relative_to(root.resolve()).as_posix()}
        for f in (builder.figures if builder else [])
    ]
    summary["methods"] = methods
    summary["run"] = {"run_dirs": [str(r.path) for r in runs], "provenance": provenance}
    names = [str(r.config.get("name")) for r in runs if isinstance(r.config, dict) and r.config.get("name")]
    title = "reprsim report: " + (", ".join(names) if names else ", ".join(r.name for r in runs))
    # temporary file + rename, never through a symlink (storage.atomic_write_bytes); summary.json last:
    # it marks the folder as a report folder reprsim made
    atomic_write_bytes(root / REPORT_HTML, to_html(blocks, title).encode("utf-8"))
    atomic_write_bytes(root / REPORT_MD, to_markdown(blocks, title, root).encode("utf-8"))
    atomic_write_bytes(root / SUMMARY_FILE, json.dumps(summary, indent=2, allow_nan=False, default=str).encode("utf-8"))
    bar.update(1)
    bar.close()
    return root / (REPORT_HTML if format == "html" else REPORT_MD)


def _stages(progress: bool | None) -> Any:
    """A tqdm bar over the report's four stages (read, analyse, draw, write) on stderr; disabled
    unless ``progress`` is True, or None and stderr is a terminal."""
    import sys

    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else bool(progress)
    return tqdm(
        total=4,
        desc="report: reading tables",
        unit="stage",
        file=sys.stderr,
        disable=not show,
        bar_format="{desc} [{n_fmt}/{total_fmt} stages, {elapsed}]",
    )


def _unit_dirs(runs: list[Run]) -> dict[str, Path]:
    """Each unit id of the (possibly run-prefixed) table → its folder ``<run>/units/<id>``; ids that
    are not a plain file name (an absolute or ``../`` path in a foreign table) get none."""
    out: dict[str, Path] = {}
    for r in runs:
        prefix = f"{r.name}/" if len(runs) > 1 else ""
        for uid in r.table["unit_id"].astype(str).unique():
            own = uid[len(prefix) :] if uid.startswith(prefix) else uid
            if path_name_problem(own) is None:
                out[uid] = r.path / UNITS_DIR / own
    return out
