"""Molecular models (PDB, mmCIF) read with gemmi: atom positions and their weights.

:func:`read_model` reads the first model of a coordinate file (``.pdb``, ``.ent``,
``.cif``, ``.mmcif``, optionally gzipped) and returns the positions (x, y, z) in Å, in the
file's own frame (as ChimeraX places the model), and a weight per atom: its number of
electrons as a neutral atom (the atomic number, as ChimeraX's ``molmap`` weights atoms)
times its occupancy, so that alternate conformations count once in all. Waters are left
out (a cryo-EM map of a complex shows no ordered solvent); hydrogens, ligands and ions
are kept when the file has them. Atoms of an unknown element (``X``) are left out.

Anything gemmi cannot read, or a model with no atom left, raises
:class:`~zernike3d.errors.InputError` naming the file.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError

#: suffixes of the coordinate files read here (before an optional ``.gz``)
MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")


@dataclass(frozen=True)
class MolecularModel:
    """Atoms of one model: ``positions`` float64 (A, 3), (x, y, z) Å in the file's frame;
    ``weights`` float64 (A,), electrons (atomic number × occupancy)."""

    positions: np.ndarray
    weights: np.ndarray


def is_model_path(path) -> bool:
    """Whether ``path`` names a coordinate file by its suffix (``.gz`` aside)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(MODEL_SUFFIXES)


def read_model(path) -> MolecularModel:
    """The atoms of the first model in the coordinate file ``path`` (see the module
    docstring); :class:`InputError` naming ``path`` when it cannot be read or has no atoms."""
    import gemmi

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "not a file")
    try:
        structure = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as err:
        raise InputError(path, f"not a readable PDB or mmCIF model ({err})") from None
    if len(structure) == 0:
        raise InputError(path, "the file holds no model (no atoms)")
    structure.remove_waters()
    positions, weights = [], []
    for chain in structure[0]:
        for residue in chain:
            for atom in residue:
                electrons = atom.element.atomic_number
                if electrons > 0 and atom.occ > 0:
                    positions.append(atom.pos.tolist())
                    weights.append(electrons * atom.occ)
    if not positions:
        raise InputError(path, "the model has no atoms (waters and atoms of unknown element or zero occupancy "
                               "left out)")
    coordinates = np.asarray(positions, dtype=np.float64)
    if not np.isfinite(coordinates).all():
        raise InputError(path, "some atom coordinates are not finite numbers")
    return MolecularModel(coordinates, np.asarray(weights, dtype=np.float64))
