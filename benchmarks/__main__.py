"""``python -m benchmarks [--quick]``: the performance table of issue 7 (see benchmarks/run.py)."""

from benchmarks.run import main

main()
