"""Profiles: how much work each claim does.

``quick`` runs the whole suite in a few minutes on 2 cores (the test suite uses it);
``full`` (the default of ``landscape verify``) uses more seeds and larger problems for
publishable numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """A named amount of work.

    Attributes:
        name: ``quick`` or ``full``.
        seeds: independent repetitions where a claim averages over seeds.
        scale: a multiplier claims apply to their run lengths and grid sizes.
    """

    name: str
    seeds: int
    scale: float

    def pick(self, quick, full):
        """``quick`` or ``full`` depending on the profile."""
        return quick if self.name == "quick" else full


PROFILES = {"quick": Profile("quick", seeds=2, scale=1.0), "full": Profile("full", seeds=4, scale=3.0)}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; ``ValueError`` otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; expected one of: {', '.join(PROFILES)}.") from None
