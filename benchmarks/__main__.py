"""`python -m benchmarks --list`: which benchmark measures what, and how to run it."""

import argparse

from benchmarks import BENCHMARKS, RUNS, index_table

parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
parser.add_argument("--list", action="store_true", help="print the benchmarks")
parser.add_argument(
    "--markdown", action="store_true", help="the same, as benchmarks/README.md's table"
)
args = parser.parse_args()
if args.markdown:
    print(index_table())
else:
    for b in BENCHMARKS:
        print(f"{b.name}: {b.measures}\n    {b.command}")
        for result in b.results:
            print(f"    -> benchmarks/results/{result}")
    for result, how in RUNS.items():
        print(f"{result}: {how}")
