"""The avatar: its configuration (config.py) and checkpoints (checkpoint.py), data (crops, rays, patches), model
(deformer, PairOF occupancy, albedo, SelF shading), volume renderer, losses, trainer, metrics and renders. Imports
smplx, pairof and segment; nothing imports it."""
