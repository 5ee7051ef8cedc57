"""Small pieces shared by the training loops (LBS weights, PairOF): one checked optimisation step."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["optimisation_step"]


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
