"""Reading a function's source from places someone else may have filled: a directory, a git
repository, a zip archive. What is read is data, never a path to follow out of the source.

* **A directory** (``code_src`` a local directory, or a git checkout): entries are walked
  without following links. A symbolic link whose target resolves inside the source's root and
  is a regular file gives that file's bytes under the link's own name; a link to a directory
  inside the root is skipped (its files are taken where they are); a link whose target lies
  outside the root (even a dangling one), a device, a FIFO or a socket is refused with
  :class:`ConfigurationError` naming the entry and why. Files are opened with ``O_NOFOLLOW``
  and ``O_NONBLOCK`` (a FIFO cannot hang the host), checked with ``fstat`` to be regular, and
  read in chunks with the byte budget enforced while reading. The top-level path the user
  names is theirs: if it is itself a link, it is followed.
* **A zip** (``zip+file://``, ``zip+https://``): the archive is read from disk or downloaded
  into a temporary file with its size capped while it arrives; the central directory is
  counted before ``zipfile`` parses it; entries are inflated in chunks, counting the bytes
  that actually come out (the headers' sizes are never trusted), against the total cap and
  the compression-ratio cap. Only stored and deflated entries are read (``zipfile`` inflates
  bzip2 and lzma without an output bound); entries whose Unix mode says symbolic link (or any
  other non-regular file) are refused, never taken as data; names that would land outside the
  source are refused.
* **A git repository** (``git+https://``, ``git+file://``, ``#ref`` a branch, tag or full
  commit sha): ``git init`` an empty repository, ``git fetch --depth 1`` the one ref (or
  ``HEAD``), list its tree and check the caps against the listed sizes, then check it out
  with ``core.symlinks=true`` (links arrive as links, and the directory walk judges them). No
  hooks run, no submodule is fetched, no prompt is shown, Git LFS does not smudge, and the
  fetched pack is capped in size (``RLIMIT_FSIZE`` through util-linux's ``prlimit``, found
  on every Linux this runs on; without it, only the tree's listed sizes are checked).

How a remote source is reached (TLS, ``PYHOST_SOURCE_CA_FILE``, credentials, redirects,
timeouts) is :mod:`pyhost.runtime.source_transport`.

The caps, each a module constant overridden by an environment variable read at each call
(listed in ``docs/runtime.md``); a refusal names the cap, its value and the variable:

* ``MAX_SOURCE_BYTES`` (``PYHOST_SOURCE_MAX_BYTES``, 32 MiB): the bytes of all the files.
* ``MAX_SOURCE_FILES`` (``PYHOST_SOURCE_MAX_FILES``, 10,000): entries walked in a directory
  (files, links, directories), listed in a git tree, or held by a zip.
* ``MAX_ZIP_RATIO`` (``PYHOST_SOURCE_MAX_ZIP_RATIO``, 200): bytes inflated per archive byte.
* ``MAX_FETCH_BYTES`` (``PYHOST_SOURCE_MAX_FETCH_BYTES``, 64 MiB): a zip archive, downloaded
  or local, and the pack a git fetch writes; twice the byte cap leaves room for stored
  entries and headers, and a larger archive could not pass the byte cap anyway.

The ratio cap applies to the bytes inflated from the whole archive against the archive's own
size, once more than ``ZIP_RATIO_FLOOR`` (1 MiB) has come out: a small archive of code is
never refused for compressing well. Source code deflates 3:1 to 10:1, generated or very
repetitive files to a few dozen to one; deflate itself cannot pass about 1032:1, which a bomb
approaches. 200:1 is far above the first and well under the second.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import urllib.error
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .source_transport import GitTransport, git_transport, open_url, redact_url, tls_advice

__all__ = ["MAX_FETCH_BYTES", "MAX_SOURCE_BYTES", "MAX_SOURCE_FILES", "MAX_ZIP_RATIO",
           "ZIP_RATIO_FLOOR", "SourceLimits", "read_directory", "read_file", "read_git",
           "read_zip"]

MAX_SOURCE_BYTES = 32 << 20  # the source travels in one message; keep it well under a frame
MAX_SOURCE_FILES = 10_000
MAX_ZIP_RATIO = 200
MAX_FETCH_BYTES = 64 << 20  # twice the content cap: room for stored entries and headers
ZIP_RATIO_FLOOR = 1 << 20

_SKIP_DIRS = {".git", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".venv"}
_CHUNK = 64 << 10
_GIT_SCHEMES = ("https", "http", "file", "ssh")
_REF = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./+-]*")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class SourceLimits:
    """The caps on reading one source; :meth:`from_env` reads them as set now.

    Attributes:
        max_bytes: the files' total size (``PYHOST_SOURCE_MAX_BYTES``).
        max_files: entries walked in a directory, or held by a zip (``PYHOST_SOURCE_MAX_FILES``).
        max_zip_ratio: inflated bytes per archive byte (``PYHOST_SOURCE_MAX_ZIP_RATIO``).
        max_fetch_bytes: a zip archive's size, or a git fetch's pack
            (``PYHOST_SOURCE_MAX_FETCH_BYTES``).
    """

    max_bytes: int = MAX_SOURCE_BYTES
    max_files: int = MAX_SOURCE_FILES
    max_zip_ratio: int = MAX_ZIP_RATIO
    max_fetch_bytes: int = MAX_FETCH_BYTES

    @classmethod
    def from_env(cls) -> SourceLimits:
        """The caps, each from its environment variable when set, else its default.

        Raises:
            ConfigurationError: a variable is set to something other than a positive integer.
        """
        return cls(_env_int("PYHOST_SOURCE_MAX_BYTES", MAX_SOURCE_BYTES),
                   _env_int("PYHOST_SOURCE_MAX_FILES", MAX_SOURCE_FILES),
                   _env_int("PYHOST_SOURCE_MAX_ZIP_RATIO", MAX_ZIP_RATIO),
                   _env_int("PYHOST_SOURCE_MAX_FETCH_BYTES", MAX_FETCH_BYTES))


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigurationError(f"{name}={text!r}: give a positive whole number")
    return value


def _over(what: str, cap: str, value: int, variable: str, advice: str = "") -> ConfigurationError:
    return ConfigurationError(f"{what}: {cap} (the cap is {value:,}; set {variable} to raise "
                              f"it){advice}")


_CODE_NOT_DATA = "; a function's source is code, not data (log data as a dataitem)"


class _Budget:
    """The bytes and entries one source may still take."""

    def __init__(self, what: str, limits: SourceLimits) -> None:
        self.what = what
        self.limits = limits
        self.bytes = 0
        self.entries = 0

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_files:
            raise _over(self.what, f"more than {self.limits.max_files:,} files",
                        self.limits.max_files, "PYHOST_SOURCE_MAX_FILES")

    def take(self, count: int, name: str) -> None:
        self.bytes += count
        if self.bytes > self.limits.max_bytes:
            raise _over(self.what, f"more than {self.limits.max_bytes:,} bytes of files "
                        f"(passed at {name!r})", self.limits.max_bytes,
                        "PYHOST_SOURCE_MAX_BYTES", _CODE_NOT_DATA)

    def read(self, stream: IO[bytes], name: str) -> bytes:
        """All of ``stream``, reading never more than the remaining budget plus one byte."""
        parts: list[bytes] = []
        while True:
            chunk = stream.read(min(_CHUNK, self.limits.max_bytes - self.bytes + 1))
            if not chunk:
                return b"".join(parts)
            self.take(len(chunk), name)
            parts.append(chunk)


# -- files and directories -------------------------------------------------------------------

def read_file(path: Path, what: str, limits: SourceLimits | None = None) -> bytes:
    """The bytes of the one file the user named (a link there is followed: it is their path).

    Raises:
        ConfigurationError: it is not a regular file, cannot be read, or passes the byte cap.
    """
    budget = _Budget(what, limits or SourceLimits.from_env())
    return _read_regular(path, str(path), budget, follow=True)


def read_directory(root: Path, what: str, limits: SourceLimits | None = None) -> dict[str, bytes]:
    """The files under ``root`` by relative path; see the module's docstring for what is read.

    Raises:
        ConfigurationError: an entry is refused (named, with why), a cap is passed, or the
            directory holds no files.
    """
    budget = _Budget(what, limits or SourceLimits.from_env())
    real_root = os.path.realpath(root)
    files: dict[str, bytes] = {}
    pending = [""]  # relative directories still to list; a list, not recursion: depth is free
    while pending:
        relative_dir = pending.pop()
        entries = []
        try:
            with os.scandir(os.path.join(real_root, relative_dir)) as listing:
                for entry in listing:  # counted as listed: a huge directory is not held whole
                    if entry.name in _SKIP_DIRS and entry.is_dir():  # nor read if a link
                        continue
                    budget.entry()
                    entries.append(entry)
        except OSError as exc:
            raise ConfigurationError(f"{what}: cannot list {relative_dir or '.'!r}: "
                                     f"{exc.strerror}") from None
        for entry in sorted(entries, key=lambda entry: entry.name):
            name = f"{relative_dir}/{entry.name}" if relative_dir else entry.name
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:  # gone since it was listed
                continue
            if stat.S_ISDIR(mode):
                pending.append(name)
            elif stat.S_ISLNK(mode):
                data = _read_link(real_root, entry.path, name, budget)
                if data is not None and not name.endswith((".pyc", ".pyo")):
                    files[name] = data
            elif stat.S_ISREG(mode):
                if not entry.name.endswith((".pyc", ".pyo")):
                    files[name] = _read_regular(Path(entry.path), name, budget, follow=False)
            else:
                raise ConfigurationError(f"{what}: {name!r} is {_kind(mode)}, not a regular "
                                         "file; a function's source holds files only")
    if not files:
        raise ConfigurationError(f"{what} holds no files")
    return files


def _read_link(real_root: str, path: str, name: str, budget: _Budget) -> bytes | None:
    """A link's file's bytes when it resolves inside the root; None for a link to a directory
    inside it or a dangling one inside it."""
    target = os.path.realpath(path)
    if os.path.commonpath([real_root, target]) != real_root:
        raise ConfigurationError(f"{budget.what}: {name!r} is a symbolic link to "
                                 f"{os.readlink(path)!r}, outside the source; a source's links "
                                 "may point only inside it")
    try:
        mode = os.stat(target, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(mode):
        return None
    return _read_regular(Path(target), name, budget, follow=False)


def _read_regular(path: Path, name: str, budget: _Budget, *, follow: bool) -> bytes:
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        why = "it became a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise ConfigurationError(f"{budget.what}: cannot read {name!r}: {why}") from None
    with open(fd, "rb", buffering=0) as stream:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigurationError(f"{budget.what}: {name!r} is {_kind(mode)}, not a regular "
                                     "file; a function's source holds files only")
        return budget.read(stream, name)


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return kind
    return "not a regular file"


# -- zip -------------------------------------------------------------------------------------

def read_zip(url: str, what: str, limits: SourceLimits | None = None) -> dict[str, bytes]:
    """The files of the zip at ``url`` (``file://`` or ``http(s)://``).

    Raises:
        ConfigurationError: it cannot be had, is not a zip, passes a cap (named, with its value
            and variable), or holds an entry that is refused (named, with why).
    """
    limits = limits or SourceLimits.from_env()
    with tempfile.TemporaryFile(prefix="pyhost-zip-") as spool:
        if url.startswith("file://"):
            archive = _open_local_zip(Path(urlsplit(url).path), what, limits)
        else:
            _download(url, spool, what, limits)
            archive = spool
        with archive:
            return _read_archive(archive, what, limits)


def _open_local_zip(path: Path, what: str, limits: SourceLimits) -> IO[bytes]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigurationError(f"{what}: cannot read it: {exc.strerror}") from None
    stream = open(fd, "rb")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        stream.close()
        raise ConfigurationError(f"{what}: it is {_kind(info.st_mode)}, not a zip file")
    if info.st_size > limits.max_fetch_bytes:
        stream.close()
        raise _over(what, f"the archive is {info.st_size:,} bytes", limits.max_fetch_bytes,
                    "PYHOST_SOURCE_MAX_FETCH_BYTES")
    return stream


def _download(url: str, spool: IO[bytes], what: str, limits: SourceLimits) -> None:
    """Stream the response into ``spool``, refusing as soon as it passes the fetch cap."""
    cap = limits.max_fetch_bytes
    try:
        with open_url(url, what) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > cap:
                raise _over(what, f"the server announces {int(declared):,} bytes", cap,
                            "PYHOST_SOURCE_MAX_FETCH_BYTES")
            received = 0
            while chunk := response.read(min(_CHUNK, cap - received + 1)):
                received += len(chunk)
                if received > cap:
                    raise _over(what, f"the download passed {cap:,} bytes", cap,
                                "PYHOST_SOURCE_MAX_FETCH_BYTES")
                spool.write(chunk)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise ConfigurationError(f"{what}: cannot download it: the server answered HTTP "
                                 f"{exc.code} ({exc.reason})") from None
    except urllib.error.URLError as exc:
        why = redact_url(str(exc.reason))
        raise ConfigurationError(f"{what}: cannot download it: {why}{tls_advice(why)}") from None
    except OSError as exc:
        why = redact_url(str(exc))
        raise ConfigurationError(f"{what}: cannot download it: {why}{tls_advice(why)}") from None
    spool.seek(0)


def _read_archive(archive: IO[bytes], what: str, limits: SourceLimits) -> dict[str, bytes]:
    size = archive.seek(0, os.SEEK_END)
    archive.seek(0)
    _count_central_directory(archive, what, limits)
    try:
        zipped = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConfigurationError(f"{what}: not a zip file ({exc})") from None
    budget = _Budget(what, limits)
    ratio_cap = max(limits.max_zip_ratio * size, ZIP_RATIO_FLOOR)
    files: dict[str, bytes] = {}
    for info in zipped.infolist():
        name = info.filename
        if info.is_dir():
            continue
        budget.entry()
        _check_entry(info, what)
        parts: list[bytes] = []
        try:
            with zipped.open(info) as entry:
                while chunk := entry.read(min(_CHUNK, limits.max_bytes - budget.bytes + 1)):
                    budget.take(len(chunk), name)
                    if budget.bytes > ratio_cap:
                        raise _over(what, f"it inflates to more than {limits.max_zip_ratio} "
                                    f"times its {size:,} bytes (passed at {name!r})",
                                    limits.max_zip_ratio, "PYHOST_SOURCE_MAX_ZIP_RATIO")
                    parts.append(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
            raise ConfigurationError(f"{what}: {name!r} cannot be read ({exc})") from None
        files[name] = b"".join(parts)
    if not files:
        raise ConfigurationError(f"{what} holds no files")
    return files


def _check_entry(info: zipfile.ZipInfo, what: str) -> None:
    name = info.filename
    if name.startswith("/") or ".." in Path(name).parts:
        raise ConfigurationError(f"{what}: {name!r} would land outside the source directory")
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        raise ConfigurationError(f"{what}: {name!r} is {_kind(mode)}, not a regular file; "
                                 "a zip source holds files only")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ConfigurationError(f"{what}: {name!r} is compressed with method "
                                 f"{info.compress_type}; only stored and deflated entries are "
                                 "read (their inflation can be bounded)")


def _count_central_directory(archive: IO[bytes], what: str, limits: SourceLimits) -> None:
    """Refuse an archive with more entries than the cap before ``zipfile`` makes an object per
    entry: walk the central directory's headers as ``zipfile`` will, holding none."""
    try:
        end = zipfile._EndRecData(archive)  # type: ignore[attr-defined]  # same rule as zipfile
    except OSError:
        end = None
    if not end:
        raise ConfigurationError(f"{what}: not a zip file (no end of central directory)")
    size_cd, offset_cd = end[zipfile._ECD_SIZE], end[zipfile._ECD_OFFSET]  # type: ignore[attr-defined]
    start = end[zipfile._ECD_LOCATION] - size_cd  # type: ignore[attr-defined]
    if end[0] == zipfile.stringEndArchive64:  # type: ignore[attr-defined]
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore[attr-defined]
    del offset_cd  # zipfile trusts the location over the offset (data may precede the zip)
    archive.seek(max(start, 0))
    header = struct.Struct("<4s4B4HL2L5H2L")
    walked = entries = 0
    while walked < size_cd:
        fixed = archive.read(header.size)
        if len(fixed) < header.size:
            break
        fields = header.unpack(fixed)
        walked += header.size + fields[12] + fields[13] + fields[14]
        archive.seek(fields[12] + fields[13] + fields[14], os.SEEK_CUR)
        entries += 1
        if entries > limits.max_files:
            raise _over(what, f"more than {limits.max_files:,} entries",
                        limits.max_files, "PYHOST_SOURCE_MAX_FILES")
    archive.seek(0)


# -- git -------------------------------------------------------------------------------------

def read_git(url: str, what: str, limits: SourceLimits | None = None) -> dict[str, bytes]:
    """The files of ``url`` (``#ref``: a branch, tag or full commit sha) at one commit.

    Raises:
        ConfigurationError: a bad URL or ref, git failed (its message attached), a cap is
            passed, or an entry is refused.
    """
    limits = limits or SourceLimits.from_env()
    url, _, ref = url.partition("#")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in _GIT_SCHEMES:  # nor ext::, nor anything git would take as an option
        raise ConfigurationError(f"{what}: git+{scheme}:// is not read; use git+https://, "
                                 "git+http://, git+ssh:// or git+file://")
    if ref and (not _REF.fullmatch(ref) or ".." in ref):
        raise ConfigurationError(f"{what}: {ref!r} is not a branch, tag or commit sha")
    with tempfile.TemporaryDirectory(prefix="pyhost-git-") as scratch:
        checkout = Path(scratch, "checkout")
        transport = git_transport(url, Path(scratch))
        git = _Git(checkout, what, limits, transport)
        git.run("init", "--quiet", str(checkout), cwd=scratch)
        git.run("fetch", "--quiet", "--depth", "1", "--no-tags", "--no-recurse-submodules",
                transport.url, ref or "HEAD", pack_capped=True, ref=ref)
        _check_tree(git.run("ls-tree", "-r", "-l", "-z", "FETCH_HEAD"), what, limits)
        git.run("checkout", "--quiet", "FETCH_HEAD")
        return read_directory(checkout, what, limits)


class _Git:
    """``git`` with the settings every step of a fetch needs (the transport's:
    :class:`~pyhost.runtime.source_transport.GitTransport`)."""

    def __init__(self, checkout: Path, what: str, limits: SourceLimits,
                 transport: GitTransport) -> None:
        self.checkout, self.what, self.limits = checkout, what, limits
        self.config = ["-c", "core.symlinks=true", "-c", f"core.hooksPath={os.devnull}",
                       "-c", "submodule.recurse=false", "-c", "fetch.recurseSubmodules=false",
                       "-c", "advice.detachedHead=false", *transport.config]
        self.env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_LFS_SKIP_SMUDGE": "1",
                    "GIT_ASKPASS": "true", "SSH_ASKPASS": "true", **transport.env}

    def run(self, *args: str, cwd: str | None = None, pack_capped: bool = False,
            ref: str = "") -> str:
        argv = ["git", *self.config, *args]
        prlimit = shutil.which("prlimit")
        if pack_capped and prlimit:  # no file git writes (the pack) may pass the fetch cap
            argv = [prlimit, f"--fsize={self.limits.max_fetch_bytes}", "--", *argv]
        try:
            done = subprocess.run(argv, cwd=cwd or self.checkout, env=self.env,
                                  capture_output=True, text=True, timeout=300, check=False,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:  # its message holds the command line, and the URL
            raise ConfigurationError(f"{self.what}: git {args[0]} took more than 300 s; "
                                     "given up") from None
        except OSError as exc:
            raise ConfigurationError(f"{self.what}: git {args[0]}: {exc}") from None
        if pack_capped and done.returncode != 0 and self._hit_file_cap():
            raise _over(self.what, "the fetch passed the size cap",
                        self.limits.max_fetch_bytes, "PYHOST_SOURCE_MAX_FETCH_BYTES")
        if done.returncode != 0:
            said = redact_url(done.stderr.strip()[-500:])
            raise ConfigurationError(f"{self.what}: {_plainly(ref, said)}git {args[0]} "
                                     f"failed: {said}{tls_advice(said)}")
        return done.stdout

    def _hit_file_cap(self) -> bool:
        """Whether a file git was writing stopped at the cap (``SIGXFSZ`` killed its writer;
        git itself then reports only that the pack could not be read)."""
        cap = self.limits.max_fetch_bytes
        for directory, _, names in os.walk(self.checkout / ".git"):
            for name in names:
                try:
                    if os.lstat(os.path.join(directory, name)).st_size >= cap:
                        return True
                except FileNotFoundError:
                    pass
        return False


def _plainly(ref: str, said: str) -> str:
    """A plain sentence before git's own message, when that one says what went wrong only
    in git's terms."""
    if "couldn't find remote ref" in said:
        return f"the repository has no branch or tag {ref!r}; "
    if "not our ref" in said:
        return f"the repository has no commit {ref!r} (or its server does not serve it); "
    if "not supported or disabled in libcurl" in said:
        return "the server redirects to another transport, which is not followed; "
    return ""


def _check_tree(listing: str, what: str, limits: SourceLimits) -> None:
    """Apply the caps to the commit's tree as git lists it, before anything is checked out."""
    budget = _Budget(what, limits)
    for line in filter(None, listing.split("\0")):
        meta, _, name = line.partition("\t")
        _, kind, _, size = meta.split()
        budget.entry()
        if kind == "blob" and size.isdigit():
            budget.take(int(size), name)
