"""PairOF, the pairwise part-occupancy field: partition, part and pair encoders, decoder, query, pretraining.
Imports smplx only."""
