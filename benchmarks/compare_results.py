"""Compare the results tables of two run folders (a refactor must keep every number).

    python benchmarks/compare_results.py BEFORE_DIR AFTER_DIR

Rows are joined on the row key (unit, probe set, layer pair, measure). Prints the number of rows of
each, rows present in only one, columns present in only one, and for every numeric column both
have the largest absolute difference (NaN in both counts as equal). Exit status 0 when every shared
row is present in both and every shared numeric column agrees exactly, else 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

KEY = ["unit_id", "probe_set", "layer_a", "layer_b", "measure"]


def load(folder: Path) -> pd.DataFrame:
    table = pd.read_parquet(folder / "results.parquet")
    if table.duplicated(KEY).any():
        raise SystemExit(f"{folder}: duplicate row keys {KEY}")
    return table.set_index(KEY)


def compare(before: pd.DataFrame, after: pd.DataFrame) -> tuple[dict[str, float], list, list]:
    """({numeric column: max |Δ|}, keys only before, keys only after)."""
    shared = before.index.intersection(after.index)
    deltas = {}
    for col in sorted(set(before.columns) & set(after.columns)):
        a, b = before.loc[shared, col], after.loc[shared, col]
        if not (pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b)):
            same = (a.astype(str) == b.astype(str)) | (a.isna() & b.isna())
            deltas[col] = 0.0 if bool(same.all()) else float("inf")
            continue
        x, y = a.to_numpy(float), b.to_numpy(float)
        both_nan = np.isnan(x) & np.isnan(y)
        diff = np.where(both_nan, 0.0, np.abs(x - y))
        deltas[col] = float(np.nanmax(np.where(np.isnan(diff), np.inf, diff))) if len(diff) else 0.0
    return deltas, list(before.index.difference(after.index)), list(after.index.difference(before.index))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    before, after = load(args.before), load(args.after)
    deltas, only_before, only_after = compare(before, after)
    print(
        f"rows: before {len(before)}, after {len(after)}; only before {len(only_before)}, only after {len(only_after)}"
    )
    print(f"columns only before: {sorted(set(before.columns) - set(after.columns))}")
    print(f"columns only after: {sorted(set(after.columns) - set(before.columns))}")
    worst = max(deltas.values(), default=0.0)
    print(f"max |Δ value| = {deltas.get('value', float('nan'))}; max |Δ| over {len(deltas)} shared columns = {worst}")
    for col, d in sorted(deltas.items()):
        if d:
            print(f"  differs: {col} max |Δ| = {d}")
    return 0 if worst == 0 and not only_before else 1


if __name__ == "__main__":
    sys.exit(main())
