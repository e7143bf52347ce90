"""``python -m benchmarks [NAME] [options]``: the one entry point of the benchmarks.

Names: ``table`` (the performance table of issue 7, :mod:`benchmarks.run`), ``second-order``
(:mod:`benchmarks.second_order`), ``paper-jvp`` (:mod:`benchmarks.paper_jvp`),
``tiny-field`` (:mod:`benchmarks.tiny_field`), ``ensemble`` (:mod:`benchmarks.ensemble`), ``sampled-jvp``
(:mod:`benchmarks.sampled_jvp`) and ``paper-end-to-end`` (:mod:`benchmarks.paper_end_to_end`); with a name it runs that one with the options
it takes (``--help``). Without a name it runs ``table`` then ``second-order``, passing
``--quick`` and ``--threads N`` to each. Modules are imported only when run, so a missing
optional benchmark does not break the others.
"""

import argparse
import importlib
import sys
from typing import Callable

BENCHMARKS = {
    "table": "benchmarks.run",
    "second-order": "benchmarks.second_order",
    "paper-jvp": "benchmarks.paper_jvp",
    "tiny-field": "benchmarks.tiny_field",
    "ensemble": "benchmarks.ensemble",
    "sampled-jvp": "benchmarks.sampled_jvp",
    "paper-end-to-end": "benchmarks.paper_end_to_end",
}
#: run, in this order, when no name is given (they take ``--quick`` and ``--threads``).
DEFAULT = ("table", "second-order")


def load(name: str) -> Callable[[list[str]], None]:
    """The ``main(argv)`` of benchmark ``name``.

    Raises:
        SystemExit: with a one-line reason when its module is missing.
    """
    try:
        return importlib.import_module(BENCHMARKS[name]).main
    except ModuleNotFoundError as err:
        if err.name != BENCHMARKS[name]:
            raise
        raise SystemExit(f"benchmark {name!r} is not available: module {BENCHMARKS[name]} is missing.") from None


def main(argv: list[str]) -> None:
    """Run the benchmark named by ``argv[0]`` with the rest, or the default ones with ``--quick``/``--threads``."""
    if argv and argv[0] in BENCHMARKS:
        load(argv[0])(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--threads", type=int, default=1, help="threads of every pool (default 1)")
    args = parser.parse_args(argv)
    shared = ["--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    for name in DEFAULT:
        print(f"\n######## python -m benchmarks {name} {' '.join(shared)}")
        load(name)(shared)


main(sys.argv[1:])
