"""The scaffold every trainer shares (LBS weights, PairOF, the avatar): a run folder with its config.yaml, a
resumable checkpoint written atomically and refused when it was made for another setup, the previous checkpoint kept
beside it to fall back to, TensorBoard, a progress bar, and one checked optimisation step.

    folder = RunFolder(out, config_to_dict(config), checkpoint="checkpoint.pt", identity=("model", "seed"))
    state = folder.resume(device) if config.resume else None      # None: start from scratch
    for step in folder.progress(start, config.steps, "PairOF"): ...
    folder.save({"field": ..., "optimizer": ..., "step": done})  # + the run's config, atomically
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import torch
import yaml
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from smplx.utils.cli import InputError
from smplx.utils.fileio import atomic_write, remove_stale_temporaries
from smplx.utils.torchfile import read_torch_file

__all__ = ["RunFolder", "optimisation_step", "previous_checkpoint"]

_log = logging.getLogger(__name__)
_REMEDY = "delete it to start over, or set resume=false"  # of a damaged checkpoint
_FOREIGN = "use another name, or resume=false to start over"  # of a checkpoint made for another setup


def previous_checkpoint(checkpoint: Path) -> Path:
    """Where a run folder keeps the checkpoint before `checkpoint`: latest.tar -> latest.prev.tar."""
    return checkpoint.with_name(f"{checkpoint.stem}.prev{checkpoint.suffix}")


class RunFolder:
    """A training run's folder.

    Each `save` keeps the checkpoint it replaces as `previous` (latest.tar -> latest.prev.tar: a hard link, so the
    disk holds one more checkpoint, not a copy of every write); `resume` falls back to it, with one warning line,
    when the checkpoint is truncated, unreadable or foreign. Only a checkpoint this run wrote or resumed from is ever
    kept: after a fall-back the bad one is simply replaced, and a run that starts over removes the previous
    checkpoint of the run it replaces.

    Args:
        out: the folder (created; config.yaml written into it unless `main` is False).
        config: the run's configuration as plain data (`smplx.utils.config.config_to_dict`).
        checkpoint: file name of the resumable checkpoint inside `out`.
        identity: top-level config keys a checkpoint must share with this run to be resumed (what it was trained
            for); a checkpoint that differs in one is refused with a message naming the key.
        main: this process writes (False on the other processes of a distributed run).
    """

    def __init__(self, out: Path, config: dict, *, checkpoint: str, identity: Iterable[str] = (), main: bool = True):
        self.out, self.config, self.identity, self.main = Path(out), config, tuple(identity), main
        self.checkpoint = self.out / checkpoint
        self.previous = previous_checkpoint(self.checkpoint)
        self._board = None
        self._keep = False  # the checkpoint in place is good: the next save keeps it as the previous one
        self._fell_back = False  # resumed from the previous checkpoint: the next save leaves it where it is
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            for path in (self.checkpoint, self.previous):
                remove_stale_temporaries(path)

    def resume(self, device: torch.device) -> dict | None:
        """The checkpoint's state when there is one, after checking `identity`; None otherwise. When the checkpoint
        cannot be used and the previous one can, warns (one line naming both) and returns the previous one's state.

        Raises:
            InputError: the checkpoint cannot be read, holds a NaN or infinite value, or was made for another setup
                (names the file, the key or entries, and what to do), and the previous one cannot be used either.
        """
        if not self.checkpoint.is_file():
            return None
        try:
            state = self._read(self.checkpoint, device)
        except InputError as error:
            if not self.previous.is_file():
                raise
            try:
                state = self._read(self.previous, device)
            except InputError as second:
                raise InputError(f"{error} (the previous checkpoint {self.previous} cannot be used either: "
                                 f"{second})") from error
            if self.main:
                reason = " ".join(str(error).split()).removesuffix(f"; {_REMEDY}").removesuffix(f"; {_FOREIGN}")
                _log.warning(f"warning: {reason}; resuming from the previous checkpoint {self.previous}")
            self._fell_back = True
            return state
        self._keep = True
        return state

    def _read(self, path: Path, device: torch.device) -> dict:
        state = read_torch_file(path, what="a resumable checkpoint", remedy=_REMEDY, map_location=device)
        if not isinstance(state, dict):
            raise InputError(f"{path} holds a {type(state).__name__}, not a checkpoint of this trainer; {_REMEDY}")
        saved = json.loads(state["config"]) if "config" in state else {}
        for key in self.identity:
            if saved.get(key) != self.config[key]:
                raise InputError(f"{path} was made with {key}={saved.get(key)}, this run has "
                                 f"{key}={self.config[key]}; {_FOREIGN}")
        return state

    def save(self, state: dict) -> None:
        """Write `state` and the run's config into the checkpoint, atomically (the previous one stays intact until
        the new one is complete), keeping the one it replaces as `previous` when that one is good."""
        full = {**state, "config": json.dumps(self.config)}
        if not self._keep and not self._fell_back:  # a previous checkpoint of a run this one replaces
            self.previous.unlink(missing_ok=True)
        keep = self.previous if self._keep else None
        atomic_write(self.checkpoint, lambda f: torch.save(full, f), keep_previous=keep)
        self._keep, self._fell_back = True, False

    @property
    def board(self) -> SummaryWriter:
        """TensorBoard writer of <out>/board (opened on first use)."""
        if self._board is None:
            self._board = SummaryWriter(str(self.out / "board"))
        return self._board

    def progress(self, start: int, total: int, desc: str, unit: str = "step") -> tqdm:
        """A tqdm bar over steps start..total-1 (silent on the processes that do not write)."""
        return tqdm(range(start, total), initial=start, total=total, desc=desc, unit=unit, disable=not self.main)

    def close(self) -> None:
        if self._board is not None:
            self._board.close()


def optimisation_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, *, step: int,
                      checkpoint: Path) -> None:
    """Backward, optimizer step and scheduler step, after checking that the loss is finite.

    Raises:
        FloatingPointError: the loss is NaN or infinite; says at which step, the learning rate, and the checkpoint to
            resume from (which still holds the last good state).
    """
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the loss became {loss.item()} at step {step}; lower lr (now "
                                 f"{scheduler.get_last_lr()[0]:.2e}) and resume from {checkpoint}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
