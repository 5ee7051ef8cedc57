"""Training and evaluation data of the avatar: square crops of InterHand2.6M-layout frames, their rays in the model
frame, near/far from the posed hand's 3D box, and patches."""

from handavatar.data.dataset import DataConfig, InterHandDataset, to_tensors

__all__ = ["DataConfig", "InterHandDataset", "to_tensors"]
