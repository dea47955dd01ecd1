"""einspace: enumerate, measure and search the space of einsum-structured linear layers.

The core (this package minus :mod:`einspace.nn`) imports without torch.

Examples:
    >>> import einspace
    >>> s = einspace.Structure.named("btt", r=0.25)
    >>> (s.nu, s.omega, s.psi)
    (0.75, 0.0, 1.0)
    >>> len(einspace.enumerate_families(2))
    39
"""

from einspace.enumeration import enumerate_families, sample_families
from einspace.errors import EinspaceError
from einspace.family import Family
from einspace.moe import MoESpec
from einspace.named import NAMED
from einspace.realization import Realization
from einspace.realizations_table import enumerate_realizations
from einspace.structure import Structure, realize_sizes

__all__ = [
    "NAMED",
    "EinspaceError",
    "Family",
    "MoESpec",
    "Realization",
    "Structure",
    "enumerate_families",
    "enumerate_realizations",
    "realize_sizes",
    "sample_families",
]

__version__ = "0.1.0"
