"""Read the files `registry stats` and `registry publish` write, as a
statistician would with pandas, and print what pandas got as JSON (used by
tests/stats_export.rs, which compares it cell by cell with the registry's own
readers):

    python stats_roundtrip.py --csv FILE.csv --parquet FILE.parquet --sdmx RELEASE_DIR

- `--csv`: read with its Frictionless Table Schema (read_stats_csv.read):
  every code column a pandas string, count a nullable Int64.
- `--parquet`: read by pandas through pyarrow with the nullable dtypes
  (`dtype_backend="numpy_nullable"`): the Parquet column types alone keep
  codes as strings and a suppressed count as <NA>.
- `--sdmx`: every SDMX-CSV data file of a release (`*.csv`), read with
  `dtype=str, keep_default_na=False` (SDMX-CSV carries no types: codes must
  be read as text).

Values are printed as pandas holds them: a code read as a number would be
printed as a JSON number, and the test fails.
"""

import argparse
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

import read_stats_csv


def plain(v):
    """A cell as JSON: <NA> -> None, numpy scalars -> Python ones."""
    if v is pd.NA or v is None:
        return None
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d")
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):
        return v.item()
    return v


def frame_summary(frame):
    return {
        "columns": list(frame.columns),
        "dtypes": {c: str(t) for c, t in frame.dtypes.items()},
        "rows": [[plain(v) for v in row] for row in frame.itertuples(index=False, name=None)],
    }


def read_parquet(path):
    frame = pd.read_parquet(path, engine="pyarrow", dtype_backend="numpy_nullable")
    summary = frame_summary(frame)
    summary["arrow_types"] = {f.name: str(f.type) for f in pq.read_schema(path)}
    summary["created_by"] = pq.ParquetFile(path).metadata.created_by
    return summary


def read_sdmx(directory):
    out = {}
    for path in sorted(Path(directory).glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        out[path.stem] = frame_summary(frame)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--csv")
    p.add_argument("--parquet")
    p.add_argument("--sdmx")
    a = p.parse_args()
    out = {"pandas": pd.__version__}
    if a.csv:
        out["csv"] = frame_summary(read_stats_csv.read(a.csv))
    if a.parquet:
        out["parquet"] = read_parquet(a.parquet)
    if a.sdmx:
        out["sdmx"] = read_sdmx(a.sdmx)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
