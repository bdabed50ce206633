"""pyhost as the trusted host inside a container of the engine (Docker-in-Docker): an image
FROM the session image with pyhost and its pure Python dependencies copied in, and a runner
that executes a script in such a container with the engine socket mounted.

Everything made here is labelled org.pyhost.test=1 and removed by id; session containers the
host container started are removed by their owner label.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import tarfile
import textwrap
from collections.abc import Iterator

import docker
import docker.types

from pyhost.launchers.docker.image import DEFAULT_TAG
from pyhost.launchers.docker.wheels import SITE_DIR
from pyhost.launchers.ownership import LABEL_PREFIX

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TEST_LABELS = {"org.pyhost.test": "1"}
HOST_DEPS = ("docker", "requests", "urllib3", "idna", "certifi", "charset_normalizer", "packaging")


@contextlib.contextmanager
def dind_host_image(client) -> Iterator[str]:
    """Build the host image for the block; its tag."""
    tag = f"pyhost-test-dind:{secrets.token_hex(4)}"
    image_id = _build(client, tag, _host_context())
    try:
        yield tag
    finally:
        client.api.remove_image(image_id, force=True)


def _host_context() -> io.BytesIO:
    import docker as docker_package

    site = os.path.dirname(os.path.dirname(docker_package.__file__))
    dockerfile = textwrap.dedent(f"""\
        FROM {DEFAULT_TAG}
        COPY host /opt/pyhost-host
        # not a session image: this value is no source hash; the pinned packages (msgpack
        # & co) are in SITE_DIR, which the session image's own PYTHONPATH holds too
        LABEL org.pyhost.hash=test-host
        ENV PYTHONPATH=/opt/pyhost-host:{SITE_DIR}
        USER 0
        WORKDIR /
        ENTRYPOINT ["python3"]
        """).encode()
    buffer = io.BytesIO()
    skip = lambda info: None if "__pycache__" in info.name else info  # noqa: E731
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        entry = tarfile.TarInfo("Dockerfile")
        entry.size = len(dockerfile)
        tar.addfile(entry, io.BytesIO(dockerfile))
        tar.add(os.path.join(ROOT, "pyhost"), "host/pyhost", filter=skip)
        tar.add(os.path.join(ROOT, "container", "hxpy"), "host/hxpy", filter=skip)
        for name in HOST_DEPS:
            tar.add(os.path.join(site, name), f"host/{name}", filter=skip)
    buffer.seek(0)
    return buffer


def _build(client, tag: str, context: io.BytesIO) -> str:
    image_id = None
    log = []
    for chunk in client.api.build(fileobj=context, custom_context=True, tag=tag,
                                  labels=TEST_LABELS, rm=True, forcerm=True, pull=False,
                                  decode=True):
        assert "error" not in chunk, f"building {tag} failed: {chunk['error']}\n{''.join(log)}"
        log.append(str(chunk.get("stream", "")))
        if isinstance(chunk.get("aux"), dict) and chunk["aux"].get("ID"):
            image_id = chunk["aux"]["ID"]
    assert image_id, f"building {tag} gave no image\n{''.join(log)}"
    return image_id


def run_host(client, image: str, script: str, network: str | None, data_dir: str,
              env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``script`` in a host container with the engine socket and ``data_dir`` at /data;
    its exit code and output. Removes it and any session container it left."""
    hostname = f"dind-host-{secrets.token_hex(4)}"
    host_config = client.api.create_host_config(
        mounts=[docker.types.Mount("/var/run/docker.sock", "/var/run/docker.sock", type="bind"),
                docker.types.Mount("/data", data_dir, type="bind")],
        network_mode=network or "none",
    )
    container = client.api.create_container(
        image, command=["-c", script], hostname=hostname, user="0", labels=TEST_LABELS,
        environment={"PYHOST_IMAGE": DEFAULT_TAG, **(env or {})}, host_config=host_config,
    )["Id"]
    try:
        client.api.start(container)
        code = client.api.wait(container, timeout=180)["StatusCode"]
        output = client.api.logs(container, stdout=True, stderr=True).decode("utf-8", "replace")
    finally:
        client.api.remove_container(container, force=True)
        owned = {"label": f"{LABEL_PREFIX}.owner.host={hostname}"}
        for left in client.api.containers(all=True, filters=owned):
            client.api.remove_container(left["Id"], force=True)
        if (client.api.info().get("Swarm") or {}).get("ControlAvailable"):
            for service in client.api.services(filters=owned):
                client.api.remove_service(service["ID"])
    return code, output


def host_result(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the host script printed no result:\n{output}"
    return json.loads(lines[-1][len("RESULT "):])
