"""The twelve checks, one module per claim id (:mod:`verification.registry` lists them in the paper's order).

Each module states its claim (``CLAIM_ID``, ``STATEMENT``), its pass and fail rules as data
(``rules() -> Claim``, :mod:`verification.rules`), the tolerances of its metrics against a
baseline (``TOLERANCES``), and ``check(profile, out, pool) -> ClaimResult``: it runs its
experiments, measures, and takes both its verdict and its threshold text from its rules.
"""
