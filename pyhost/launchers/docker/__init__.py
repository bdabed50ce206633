"""Everything that speaks to Docker: the launcher (sandboxed containers), the engine (find,
install, start), the session image (build, choose) and its Debian base, networking, engine
paths, orphans and ``pyhost doctor``. The only part of pyhost that imports the docker SDK,
always through :mod:`.client` and its one error translator."""
