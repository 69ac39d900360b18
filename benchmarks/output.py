"""Where the benchmarks write their results, and how."""

import json
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def results_path(name):
    """benchmarks/results/`name`."""
    return os.path.join(RESULTS, name)


def write_json(path, results):
    """Write `results` to `path` whole or not at all: a temporary file, then a
    rename, so an interrupted run never leaves half a results file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = path + ".partial"
    with open(temporary, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(temporary, path)


def updated_rows(path, rows, order):
    """`rows` and the rows of the results file at `path` for cases `rows`
    does not re-measure, sorted by case as in `order`: what `--update`
    writes, so re-running some cases keeps the others' measurements."""
    with open(path) as f:
        earlier = json.load(f)["rows"]
    done = {row["case"] for row in rows}
    kept = [row for row in earlier if row["case"] not in done]
    return sorted(kept + rows, key=lambda row: order.index(row["case"]))
