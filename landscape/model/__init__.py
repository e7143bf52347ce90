"""The model (docs/theory.md §1–§3): activations, input laws, the teacher, particle measures,
the Gaussian kernels, the expectation backends (exact Gaussian and sampled) and the linear
self-attention network it is the mean-field limit of.

Modules in flow order: :mod:`.activations`, :mod:`.laws`, :mod:`.teacher`, :mod:`.measure`,
:mod:`.kernels`, :mod:`.expectations`, :mod:`.attention`. Nothing here imports the landscape,
the solvers or the dynamics.
"""
