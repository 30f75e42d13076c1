"""Fixtures for the studio's extras: a real photo with a face (skimage's
astronaut), small enough for the tiny pipelines."""

import pytest
from PIL import Image


@pytest.fixture(scope="session")
def astronaut(tmp_path_factory):
    import skimage.data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).resize((128, 128), Image.LANCZOS).save(path)
    return path
