"""Files: atomic writes, pickle-free ``.npz``/``.npy`` and strict JSON/TOML readers (regular files
only, size caps, bounded nesting) and writers, the memory cap, output-folder markers
(:mod:`.files`); the problem file (:mod:`.problem`, imported explicitly: it builds the model, and
:mod:`landscape.model.measure` imports :mod:`.files`).
"""

from .files import (
    MAX_ARRAY_BYTES,
    atomic_write_bytes,
    atomic_write_text,
    check_memory,
    check_output_folder,
    claim_output_folder,
    load_npy,
    load_npz,
    output_marker,
    read_json,
    read_regular_file,
    read_toml,
    save_npz,
    write_json,
)

__all__ = [
    "MAX_ARRAY_BYTES",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_memory",
    "check_output_folder",
    "claim_output_folder",
    "load_npy",
    "load_npz",
    "output_marker",
    "read_json",
    "read_regular_file",
    "read_toml",
    "save_npz",
    "write_json",
]
