"""InterHand2.6M-layout data: the layout and its files (`interhand`, `annotations`), masks from projected meshes
(`masks`, `posing`), the annotation cache (`preprocess`), synthetic captures in that layout (`synthetic/`) and your
own video turned into one (`video/`). Imports smplx only."""
