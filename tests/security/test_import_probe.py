"""The import check probes an image that may be anyone's (``image=``, ``base_image=``): an
image whose python3 floods the probe's output is not believed, costs the host a bounded
read, and its run goes on as it would without the check."""

from __future__ import annotations

import io
import logging
import tarfile

import pytest

import pyhost.runtime as dh
from pyhost.launchers.docker import image_modules
from pyhost.launchers.docker.image import SERVER_ENTRYPOINT, resolve_image
from tests.security.conftest import peak_rss_bytes, rss_bytes

# A python3 that answers `python3 -c ...` (the probe) with an endless stream, and runs the
# real one otherwise (the session server, which is started with -c too).
FLOODING_PYTHON = f"""#!/bin/sh
if [ "$1" = "-c" ] && [ "$2" != "{SERVER_ENTRYPOINT[-1]}" ]; then
  exec yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
fi
exec /usr/bin/python3 "$@"
""".encode()

NEEDS_PKG = "import nonexistent_pkg_xyz\n\ndef main():\n    return 1\n"


@pytest.fixture
def flooding_image(client):
    base = resolve_image(client)
    dockerfile = (f"FROM {base}\nUSER root\nCOPY python3 /usr/local/bin/python3\n"
                  "RUN chmod 755 /usr/local/bin/python3\nUSER 61000\n").encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile), ("python3", FLOODING_PYTHON)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    tag = "hxpy-shim-flood:test"
    for _ in client.api.build(fileobj=context, custom_context=True, tag=tag, rm=True,
                              forcerm=True, network_mode="none", decode=True):
        pass
    yield tag
    client.api.remove_image(tag, force=True)


def test_a_probe_that_floods_is_not_believed_and_its_read_is_bounded(
        home, tmp_path, monkeypatch, client, flooding_image, jobs_settle, caplog):
    monkeypatch.setenv("PYHOST_CACHE", str(tmp_path / "cache"))
    image_modules._by_id.clear()
    image_modules._by_reference.clear()
    project = dh.get_or_create_project("flood")
    fn = project.new_function(name="needs-pkg", kind="python", code=NEEDS_PKG,
                              handler="main", image=flooding_image)
    before, peak_before = rss_bytes(), peak_rss_bytes()
    with caplog.at_level(logging.WARNING, logger="pyhost.launchers.docker"):
        run = fn.run(wait=True)  # not refused: the image's answer was not believed
    # ...so the run starts, and the container reports the missing module as before.
    assert run.status.state == "ERROR"
    assert run.status.error["type"] == "ModuleNotFoundError", run.status.error
    assert "more than 4194304 bytes (PYHOST_IMPORT_PROBE_CAP)" in caplog.text
    assert not list((tmp_path / "cache").glob("image-modules/*"))  # nothing cached
    # The bound: the host read at most the cap (4 MiB) of an endless stream.
    assert peak_rss_bytes() - peak_before < 64 << 20
    assert rss_bytes() - before < 64 << 20
