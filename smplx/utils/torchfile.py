"""Reading the project's torch files (checkpoints, skinning weights) as untrusted input: a file that cannot be read, or
that holds a NaN or infinite number anywhere, is an `InputError` naming the file, the entries and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from smplx.utils.cli import InputError

__all__ = ["read_torch_file", "nonfinite_entries"]


def nonfinite_entries(tree: Any, prefix: str = "") -> list[str]:
    """The dotted names of the floating-point tensors, arrays and numbers in `tree` (nested dicts, lists and
    tuples) that hold NaN or an infinity, in traversal order (e.g. ['network.albedo.codes',
    'optimizer.state.3.exp_avg'])."""
    if isinstance(tree, dict):
        return [name for key, value in tree.items() for name in nonfinite_entries(value, f"{prefix}{key}.")]
    if isinstance(tree, (list, tuple)):
        return [name for i, value in enumerate(tree) for name in nonfinite_entries(value, f"{prefix}{i}.")]
    name = prefix[:-1] or "the value"
    if isinstance(tree, torch.Tensor):
        return [name] if tree.is_floating_point() and not bool(torch.isfinite(tree).all()) else []
    if isinstance(tree, np.ndarray):
        return [name] if tree.dtype.kind == "f" and not np.isfinite(tree).all() else []
    if isinstance(tree, float):
        return [] if np.isfinite(tree) else [name]
    return []


def read_torch_file(path: str | Path, *, what: str, remedy: str, map_location: Any = "cpu",
                    finite: bool = True) -> Any:
    """`torch.load(path, weights_only=True)`, with the errors a user can act on.

    Args:
        what: what the file should be, for the message (e.g. 'an avatar checkpoint (latest.tar)').
        remedy: what to do about a bad file (e.g. 'delete it to start over, or set resume=false').
        finite: also refuse a file with a NaN or infinite floating-point value anywhere.

    Raises:
        InputError: the file cannot be read (truncated, not a torch file, or holding other objects than tensors and
            plain data), or it holds non-finite numbers (the first entries are named).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # damaged bytes reach the unpickler as any exception (IndexError too)
        detail = " ".join(str(error).split())[:200]
        raise InputError(f"{path} cannot be read as {what} ({type(error).__name__}: {detail}); {remedy}") from error
    if finite:
        bad = nonfinite_entries(state)
        if bad:
            shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
            raise InputError(f"{path}: {what} holds NaN or infinite values in {shown}; {remedy}")
    return state
