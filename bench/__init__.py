"""Benchmarks and measurements at real sizes, each a `python -m bench.<name>` that prints its figures with the
machine's threads (the tests use small sizes): `pose_hd` (posing MANO-HD), `pairof_query` (PairOF's occupancy
queries), `dataset` (the training data pipeline), `render` (the fast renderer against the reference),
`texture_baseline` (the textured-mesh baseline), `appearance_ceiling` (what limits the avatar's colours) and
`appearance_oracle` (which of a trained avatar's layers holds back each metric). May import
every package of ours, never tests/.
"""
