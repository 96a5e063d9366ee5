"""Read a `registry stats --format csv --out FILE.csv` table with pandas,
typed by the Frictionless Table Schema written beside it (FILE.schema.json):
every code column a string (DIVIPOLA "05" stays "05"), count a nullable
integer (empty when obs_status is "suppressed"), log_seq an integer.

    python read_stats_csv.py FILE.csv

prints a JSON summary (used by tests/stats_export.rs). As a library:
`read(path)` returns the typed DataFrame.
"""

import json
import sys
from pathlib import Path

import pandas as pd

# Frictionless field types -> pandas dtypes (nullable where values may be missing).
DTYPES = {"string": "string", "integer": "Int64", "date": "string"}


def schema_of(csv_path):
    path = Path(csv_path)
    return json.loads(path.with_name(path.stem + ".schema.json").read_text(encoding="utf-8"))


def read(csv_path):
    schema = schema_of(csv_path)
    dtype = {f["name"]: DTYPES[f["type"]] for f in schema["fields"]}
    missing = schema.get("missingValues", [""])
    frame = pd.read_csv(
        csv_path,
        dtype=dtype,
        encoding="utf-8",
        keep_default_na=False,
        na_values={name: missing for name in dtype},
    )
    # The header must be the schema's fields, in order.
    names = [f["name"] for f in schema["fields"]]
    if list(frame.columns) != names:
        raise SystemExit(f"columns {list(frame.columns)} are not the schema's {names}")
    for f in schema["fields"]:
        if f["type"] == "date":
            frame[f["name"]] = pd.to_datetime(frame[f["name"]], format="%Y-%m-%d")
    return frame


def main(csv_path):
    schema = schema_of(csv_path)
    frame = read(csv_path)
    dims = schema.get("primaryKey", [])
    status = frame["obs_status"]
    summary = {
        "rows": len(frame),
        "columns": list(frame.columns),
        "dtypes": {c: str(t) for c, t in frame.dtypes.items()},
        "first_row": {d: frame[d].iloc[0] for d in dims},
        "status_counts": {k: int(v) for k, v in status.value_counts().items()},
        "suppressed_counts_all_missing": bool(frame.loc[status == "suppressed", "count"].isna().all()),
        "zero_counts_all_zero": bool((frame.loc[status == "zero", "count"] == 0).all()),
        "observed_counts_all_positive": bool((frame.loc[status == "observed", "count"] > 0).all()),
        "observed_sum": int(frame.loc[status == "observed", "count"].sum()),
        "unique_keys": bool(not frame.duplicated(subset=dims).any()) if dims else True,
        # Without the schema pandas guesses: a code like "05" becomes the number 5.
        "untyped_first_row": {d: str(pd.read_csv(csv_path)[d].iloc[0]) for d in dims},
    }
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: read_stats_csv.py FILE.csv")
    main(sys.argv[1])
