"""The design documents' examples and DigitalHub documentation scenarios, run in real
containers with the handler files unchanged; only the host's import line may differ
(``import digitalhub as dh`` becomes ``import pyhost.runtime as dh``)."""

import pytest

from tests.integration.conftest import (  # noqa: F401  (fixtures, found by name)
    client,
    jobs_settle,
    no_leftover_containers,
    our_containers,
)


@pytest.fixture
def dh(tmp_path, client, jobs_settle):  # noqa: F811  (the fixtures, by name)
    """``pyhost.runtime`` on a fresh home (a real SQLite catalog and store), as a DigitalHub
    user's ``import digitalhub as dh``."""
    import pyhost.runtime as runtime

    runtime.configure(tmp_path / "home")
    return runtime
