"""Regenerate the bundled example measures (run from the repository root):
``python landscape/examples/make_examples.py`` (the cases: :func:`landscape.cases.example_measures`)."""

from pathlib import Path

from landscape.cases import example_measures

HERE = Path(__file__).parent

if __name__ == "__main__":
    for name, measure in example_measures().items():
        measure.save(HERE / f"{name}.npz")
