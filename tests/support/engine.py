"""The real engine with the session image, for the suites that need one: no engine is a
FAILURE, never a skip (`make test` brings the engine up and builds the image first)."""

from __future__ import annotations

import docker
import pytest

from pyhost.errors import PyHostError


def engine_with_image(suite: str) -> docker.DockerClient:
    """The engine's client once the image matches the sources; ``suite`` names who needs it
    in the failure."""
    from pyhost.launchers.docker.client import docker_client
    from pyhost.launchers.docker.dockerd import ensure_engine
    from pyhost.launchers.docker.image import build_image

    try:
        ensure_engine(install=False)
        build_image()  # a no-op when the image matches the sources
        return docker_client()
    except PyHostError as exc:
        pytest.fail(f"{suite} need a Docker engine and the hxpy image: {exc}", pytrace=False)
