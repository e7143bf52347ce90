"""Helpers shared by the subcommands of the ``landscape`` command."""

from __future__ import annotations

import argparse

import torch

__all__ = ["Parser", "UsageError", "check_device"]


class UsageError(ValueError):
    """Bad command-line usage."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors raise :class:`UsageError` (one line, exit 2) instead of exiting."""

    def error(self, message: str) -> None:  # one line, exit 2
        raise UsageError(message)


def check_device(name: str) -> str:
    """``name`` if it is ``cpu`` or an available ``cuda[:N]``.

    Raises:
        ValueError: CUDA requested but unavailable, or a device of another kind.
    """
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine.")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {name!r}.")
    return name
