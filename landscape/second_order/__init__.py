"""Second order (docs/theory.md §5): Hessian–vector products, the Wasserstein Hessian as an
operator, its symmetry null space, eigensolvers, Newton–Krylov refinement, the flat second
variation, and the classification of a critical point that combines them.

Modules in flow order: :mod:`.hessian`, :mod:`.operators`, :mod:`.nullspace`,
:mod:`.eigensolvers`, :mod:`.spectrum` (the whole spectral density by stochastic Lanczos
quadrature, and the Hutchinson trace), :mod:`.refine`, :mod:`.flat_variation`, :mod:`.settings`
(:class:`AnalysisSettings`, the ``[analysis]`` table), :mod:`.classify` (:func:`analyze`);
:mod:`.references` holds the dense, obviously-correct versions they are tested against.
"""

from .classify import VERDICTS, Analysis, analyze
from .settings import AnalysisSettings

__all__ = ["VERDICTS", "Analysis", "AnalysisSettings", "analyze"]
