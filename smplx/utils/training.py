"""The scaffold every trainer shares (LBS weights, PairOF, the avatar): a run folder with its config.yaml, a
resumable checkpoint written atomically and refused when it was made for another setup, TensorBoard, a progress bar,
and one checked optimisation step.

    folder = RunFolder(out, config_to_dict(config), checkpoint="checkpoint.pt", identity=("model", "seed"))
    state = folder.resume(device) if config.resume else None      # None: start from scratch
    for step in folder.progress(start, config.steps, "PairOF"): ...
    folder.save({"field": ..., "optimizer": ..., "step": done})  # + the run's config, atomically
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
import yaml
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from smplx.utils.cli import InputError
from smplx.utils.fileio import atomic_write, remove_stale_temporaries
from smplx.utils.torchfile import read_torch_file

__all__ = ["RunFolder", "optimisation_step"]


class RunFolder:
    """A training run's folder.

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
        self._board = None
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            remove_stale_temporaries(self.checkpoint)

    def resume(self, device: torch.device) -> dict | None:
        """The checkpoint's state when there is one, after checking `identity`; None otherwise.

        Raises:
            InputError: the checkpoint cannot be read, holds a NaN or infinite value, or was made for another setup
                (names the file, the key or entries, and what to do).
        """
        if not self.checkpoint.is_file():
            return None
        remedy = "delete it to start over, or set resume=false"
        state = read_torch_file(self.checkpoint, what="a resumable checkpoint", remedy=remedy, map_location=device)
        if not isinstance(state, dict):
            raise InputError(f"{self.checkpoint} holds a {type(state).__name__}, not a checkpoint of this trainer; "
                             f"{remedy}")
        saved = json.loads(state["config"]) if "config" in state else {}
        for key in self.identity:
            if saved.get(key) != self.config[key]:
                raise InputError(f"{self.checkpoint} was made with {key}={saved.get(key)}, this run has "
                                 f"{key}={self.config[key]}; use another name, or resume=false to start over")
        return state

    def save(self, state: dict) -> None:
        """Write `state` and the run's config into the checkpoint, atomically (the previous one stays intact until
        the new one is complete)."""
        full = {**state, "config": json.dumps(self.config)}
        atomic_write(self.checkpoint, lambda f: torch.save(full, f))

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
