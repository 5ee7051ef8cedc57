import pytest

from tests.hand_fixtures import make_tube_model, mirror_model


@pytest.fixture(scope="session")
def tube_data():
    """A small right-hand model: 8 x 33 + 1 = 265 vertices, 16 joints."""
    return make_tube_model()


@pytest.fixture(scope="session")
def tube_data_left(tube_data):
    return mirror_model(tube_data)
