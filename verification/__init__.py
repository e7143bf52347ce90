"""The paper's claims (docs/theory.md §10) as numerical checks, one module per claim.

To come (issue: verification): expressivity, benign-landscape, saddle-avoidance, rates,
conditioning, two-timescale and birth-death, each a function from a profile to a result
record with measured quantities, thresholds and a verdict, plus baselines for regression.
"""
