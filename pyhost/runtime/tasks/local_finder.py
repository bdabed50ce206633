"""How a local run imports its version's files: afresh every run, as a fresh container
does, without finding and compiling them afresh every run.

``run_job`` (:mod:`hxpy.runtime.job`) puts the version's source directory first on
``sys.path``, invalidates the import caches and imports the handler's module anew. Python's
own finder for that directory lists it again after every invalidation, and where no
bytecode may be written (``PYTHONDONTWRITEBYTECODE``, a read-only store) its loader compiles
every file again: together most of a small run's time. The finder :func:`prepare` registers
for the directory keeps its listing while the directory's mtime is unchanged (a version's
files are written once, when it is saved), and its loader keeps each file's code object
while the file's ``stat`` (mtime in ns, size, inode) is unchanged, as a ``.pyc`` is kept by
mtime and size. Module-level code still runs in every run: each run gets a new module.
Where a module file was found is kept as well, while the directory's mtime is unchanged, so
that a run's import makes its spec without looking for the file again.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import threading
from collections import OrderedDict
from importlib import machinery
from types import CodeType, ModuleType

__all__ = ["MAX_CODES", "prepare"]

#: Code objects kept, of the most recently imported files of any version.
MAX_CODES = 256

_codes: OrderedDict[str, tuple[tuple[int, int, int], CodeType]] = OrderedDict()
_codes_lock = threading.Lock()
# The names of the modules found in versions' directories so far (see prepare).
_found: set[str] = set()


def prepare(directory: str) -> None:
    """Make the next imports from ``directory`` (a version's source directory in the store)
    go through this module's finder; cheap when it already does.

    Every module found in a version's directory before is dropped from ``sys.modules``: the
    run imports its handler's module, and the modules of its own that one imports (a
    ``helper.py`` beside ``main.py``), from its own version and afresh, as a fresh container
    does. (Only the handler's module was dropped before: a new version's changed helper was
    not seen by a local run in the same process.)
    """
    for name in list(_found):
        sys.modules.pop(name, None)
    _found.clear()
    _register(directory)


def _register(directory: str) -> None:
    """This module's finder for ``directory``, for the imports from it."""
    if not isinstance(sys.path_importer_cache.get(directory), _Finder):
        sys.path_importer_cache[directory] = _Finder(directory)


class _Loader(machinery.SourceFileLoader):
    """A source file's loader that compiles it once per version of the file."""

    def get_code(self, fullname: str) -> CodeType | None:
        path = self.get_filename(fullname)
        try:
            stat = os.stat(path)
        except OSError:
            return super().get_code(fullname)  # which says what is wrong as it always does
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with _codes_lock:
            kept = _codes.get(path)
            if kept is not None and kept[0] == key:
                _codes.move_to_end(path)
                return kept[1]
        # A file changed between the stat and this read is kept under its old key: the next
        # import stats the new one and compiles again.
        code = super().get_code(fullname)
        if code is None:  # never for a source file; the signature allows it
            return None
        with _codes_lock:
            _codes[path] = (key, code)
            _codes.move_to_end(path)
            while len(_codes) > MAX_CODES:
                _codes.popitem(last=False)
        return code


class _Finder(machinery.FileFinder):
    """Python's finder for one directory, with :class:`_Loader` for source files and a
    listing that an invalidation of every cache leaves alone."""

    def __init__(self, path: str) -> None:
        super().__init__(path, (machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
                         (_Loader, machinery.SOURCE_SUFFIXES),
                         (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES))
        # A module's name -> the directory's mtime when it was found, its loader, its file.
        self._found_at: dict[str, tuple[float, _Loader, str]] = {}

    def invalidate_caches(self) -> None:
        # run_job invalidates every finder before each import. The listing is still read
        # again when the directory's mtime changes, as between two invalidations.
        pass

    def find_spec(self, fullname: str, target: ModuleType | None = None
                  ) -> machinery.ModuleSpec | None:
        # What FileFinder's search would find again while the directory's mtime is the one
        # it was found at (a file added, removed or renamed changes it); a file changed in
        # place is the loader's to see. The search is most of a small run's import.
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            mtime = -1.0
        kept = self._found_at.get(fullname)
        if kept is not None and kept[0] == mtime:
            again = machinery.ModuleSpec(fullname, kept[1], origin=kept[2])
            again.has_location = True
            again.cached = _bytecode_path(kept[2])
            _found.add(fullname)
            return again
        spec = super().find_spec(fullname, target)
        if spec is None:
            self._found_at.pop(fullname, None)
            return None
        _found.add(fullname)
        if isinstance(spec.loader, _Loader) and spec.origin is not None:
            spec.cached = _bytecode_path(spec.origin)  # worked out once per file
            if spec.submodule_search_locations is None and mtime != -1.0:  # a module file
                self._found_at[fullname] = (mtime, spec.loader, spec.origin)
        # A package's submodules are found in its own directory: by this finder as well.
        # Registered only: the modules of this run imported so far stay (dropping them
        # here dropped the handler's own module while it imported the package).
        for location in spec.submodule_search_locations or ():
            _register(location)
        return spec


@functools.lru_cache(maxsize=MAX_CODES)
def _bytecode_path(source: str) -> str | None:
    """What a module's ``__cached__`` says for ``source`` (None where Python keeps no
    bytecode)."""
    try:
        return importlib.util.cache_from_source(source)
    except NotImplementedError:
        return None
