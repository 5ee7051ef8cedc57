import pytest

from tests.hand_fixtures import SMALL_CAPTURE, make_tube_model, mirror_model


def pytest_configure(config):
    config.addinivalue_line("markers", "kill: trainers, the synthetic capture and the demo runner killed with "
                                       "SIGKILL and rerun (tests/test_kill.py, tests/test_demo_kill.py; minutes on 2 "
                                       "cores); deselect with -m 'not kill'")


@pytest.fixture(scope="session")
def tube_data():
    """A small right-hand model: 8 x 33 + 1 = 265 vertices, 16 joints."""
    return make_tube_model()


@pytest.fixture(scope="session")
def tube_data_left(tube_data):
    return mirror_model(tube_data)


@pytest.fixture(scope="session")
def synthetic_capture(tmp_path_factory):
    """A small synthetic InterHand2.6M-layout capture (SMALL_CAPTURE: 5 + 2 frames, 2 cameras). Read-only: copy it
    before changing anything."""
    from segment.synthetic import make_capture
    out = tmp_path_factory.mktemp("synthetic")
    make_capture(SMALL_CAPTURE, out, workers=1, progress=False)
    return out
