"""Your own video: frames, hand keypoints (mediapipe, optional extra in .venv-video), a fit of the hand model to
them, and a capture written in the InterHand2.6M layout (python -m segment.video.prepare). Imports smplx only.

This package's __init__ imports nothing, so the keypoint step (segment.video.mediapipe_keypoints) runs in the
optional environment, which has neither torch nor numpy 2."""
