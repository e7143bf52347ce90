"""``python -m benchmarks [table | second-order] [options]``: the one entry point of the benchmarks.

Without a name it runs both, the performance table of issue 7 (:mod:`benchmarks.run`) and
then the second-order benchmark (:mod:`benchmarks.second_order`), passing ``--quick`` and
``--threads N`` to each; with a name it runs that one with the options it takes (``--help``).
"""

import argparse
import sys

from benchmarks import run, second_order

BENCHMARKS = {"table": run.main, "second-order": second_order.main}


def main(argv: list[str]) -> None:
    """Run the benchmark named by ``argv[0]`` with the rest, or every benchmark with ``--quick``/``--threads``."""
    if argv and argv[0] in BENCHMARKS:
        BENCHMARKS[argv[0]](argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    shared = ["--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    for name, bench in BENCHMARKS.items():
        print(f"\n######## python -m benchmarks {name} {' '.join(shared)}")
        bench(shared)


main(sys.argv[1:])
