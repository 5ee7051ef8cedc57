"""InterHand2.6M-layout data: masks from projected meshes, the annotation cache, synthetic captures.
Imports smplx only."""
