"""The paper's claims (docs/theory.md §10) as numerical checks, run by ``landscape verify``.

Flow: :mod:`.registry` maps each claim id to its module in :mod:`.claims`; :mod:`.runner` runs
the requested checks for a :mod:`.profiles` profile (in parallel through :mod:`.parallel`, one
thread per task, :mod:`.threads`), writes ``results.json`` and compares it with a stored run
(:mod:`.baseline`, shipped in ``baselines/``).

Layout:

* ``claims/<id>.py``: one module per check, each with ``CLAIM_ID``, ``STATEMENT``,
  ``TOLERANCES`` (metric → :class:`~verification.baseline.Tolerance`), ``rules()`` (its
  :class:`~verification.rules.Claim`) and ``check(profile, out, pool) -> ClaimResult``. A check
  builds its problems and runs its flows with :mod:`.scenarios`, measures, and lets its rules
  give both the verdict and the threshold text.
* :mod:`.records`: the result record (:class:`~verification.records.ClaimResult`) and its JSON
  form; :mod:`.rules`: pass and fail rules as data; :mod:`.analysis`: fits, the unexplained
  fraction and the one phase rule (the reports use it too); :mod:`.comparators`: risks of the
  models the trained MLP is compared with.
* :mod:`.reproducibility`: measures how far each metric moves under reruns (behind the
  tolerances); :mod:`.pytest_plugin`: a fixture that runs claims inside a test suite.
"""
