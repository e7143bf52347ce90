"""Files: atomic writes, pickle-free ``.npz`` and strict JSON readers and writers, output-folder
markers (:mod:`.files`); the problem file (:mod:`.problem`, imported explicitly: it builds the
model, and :mod:`landscape.model.measure` imports :mod:`.files`).
"""

from .files import (
    MAX_ARRAY_BYTES,
    atomic_write_bytes,
    atomic_write_text,
    check_output_folder,
    claim_output_folder,
    load_npz,
    output_marker,
    save_npz,
    write_json,
)

__all__ = [
    "MAX_ARRAY_BYTES",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_folder",
    "claim_output_folder",
    "load_npz",
    "output_marker",
    "save_npz",
    "write_json",
]
