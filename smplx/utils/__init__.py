"""The project's shared utilities, at the bottom of the stack: every package may import them, and they import
nothing of ours outside this folder (not even the hand layer).

    cli        the command-line contract: UserError, InputError, MissingFileError, cli_main, finite_float
    config     YAML configs in three layers (defaults, experiment, key=value) checked against typed dataclasses
    fileio     atomic writes (a crash never leaves a half-written file), output folders
    torchfile  reading checkpoints and weight files with clear errors and a check for NaN
    training   a training run's folder: config.yaml, resumable checkpoint, TensorBoard, progress bar
    raycast    Embree ray casting (EmbreeMesh)
    inside     inside tests of points against closed meshes (generalized winding numbers)
    preview    mesh previews (ray-cast shaded pictures)
"""
