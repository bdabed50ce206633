"""Who the session runs as, so that it may use the io directory it is given.

A directory the user passes belongs to the user. The session should write where the user
can, and the user should read and delete what the session wrote, without pyhost changing the
directory's owner or mode. So, on a local engine:

* pyhost not root: the session runs as this user (uid and gid), which has the user's access.
* pyhost root, the directory owned by someone else: the session runs as the directory's
  owner and group, so it has the owner's access and what it writes is the owner's.
* pyhost root, a root-owned directory (e.g. from ``tempfile.mkdtemp()``, mode 0700): the
  session runs as the sandbox uid (:func:`sandbox_uid`, :data:`SANDBOX_UID` unless
  ``PYHOST_SANDBOX_UID`` says otherwise), and that uid gets the owner's permissions on the
  directory itself through a POSIX ACL entry (``user:61000:rwx``); mode bits, owner and the
  files already inside stay as they were. Root reads and deletes what the session writes.
* a directory the session cannot write even so (no write bit for the owner, a read-only
  filesystem, or one this user cannot write) is mounted read-only: inputs can be read, and a
  write in the container fails with "Read-only file system".

See ``docs/security.md`` for why root is never the session user.
"""

from __future__ import annotations

import errno
import functools
import logging
import operator
import os
import stat
import struct
from dataclasses import dataclass

from ...errors import ConfigurationError

__all__ = ["SANDBOX_UID", "SANDBOX_UID_ENV", "IoAccess", "grant_user", "io_access",
           "plan_io_access", "sandbox_uid", "sandbox_user"]

#: The uid (and gid) sessions run as when pyhost is root: no account on the host. Below 65536,
#: so an engine with user-namespace remapping or a rootless engine (which map 65536 ids) can
#: run it; above useradd's UID_MAX (60000) and in the gap systemd leaves unused between its
#: homed (60001-60513) and dynamic-user (61184-65519) ranges, so no tool hands it out. The
#: image knows it as ``hxpy`` (Dockerfile.hxpy). docs/security.md, "Who the session runs as".
SANDBOX_UID = 61000
#: The environment variable that picks another sandbox uid (a number, 1 to 2**31 - 2).
SANDBOX_UID_ENV = "PYHOST_SANDBOX_UID"

log = logging.getLogger("pyhost")


@dataclass(frozen=True)
class IoAccess:
    """The user a session runs as, whether its io directory is mounted read-only, and the
    permissions (rwx bits) an ACL entry must give that user first (0: none needed)."""

    uid: int
    gid: int
    read_only: bool = False
    grant: int = 0


def sandbox_uid() -> int:
    """The uid (also the gid) sessions run as when pyhost is root, or the engine is remote:
    ``PYHOST_SANDBOX_UID`` when set, else :data:`SANDBOX_UID`.

    Raises:
        ConfigurationError: the variable is not a number from 1 to 2**31 - 2 (0 is root, which
            is never the session user; larger ids break tools that store them signed).
    """
    text = os.environ.get(SANDBOX_UID_ENV, "").strip()
    if not text:
        return SANDBOX_UID
    try:
        uid = int(text)
    except ValueError:
        uid = -1
    if not 0 < uid < 2**31 - 1:
        raise ConfigurationError(f"{SANDBOX_UID_ENV}={text!r}: the sandbox uid is a number "
                                 "from 1 to 2147483646 (never 0: sessions do not run as root)")
    return uid


def sandbox_user() -> tuple[int, int]:
    """The session user when no io directory decides: this user unless root, else the
    sandbox uid (:func:`sandbox_uid`) as uid and gid."""
    if os.getuid() == 0:
        return sandbox_uid(), sandbox_uid()
    return os.getuid(), os.getgid()


def io_access(path: str) -> IoAccess:
    """Prepare ``path`` (created if missing, an ACL entry added if needed) and say whom the
    session runs as.

    Raises:
        ConfigurationError: the directory cannot be made, or the access it needs cannot be
            granted (the message names the directory and what to do).
    """
    if not os.path.isdir(path):
        _make(path)
    access = plan_io_access(path)
    if access.grant:
        grant_user(path, access.uid, access.grant)
    return access


def plan_io_access(path: str) -> IoAccess:
    """What :func:`io_access` would do for an existing directory, changing nothing."""
    info = os.stat(path)
    if os.getuid() != 0:
        return IoAccess(os.getuid(), os.getgid(), not _writable_by_us(path))
    if info.st_uid != 0:
        owner_can_write = bool(info.st_mode & stat.S_IWUSR)
        return IoAccess(info.st_uid, info.st_gid, not owner_can_write or _read_only_fs(path))
    uid = sandbox_uid()
    owner_bits = (info.st_mode >> 6) & 0o7
    read_only = not owner_bits & 0o2 or _read_only_fs(path)
    wanted = owner_bits & (0o5 if read_only else 0o7)
    needs = 0 if info.st_mode & wanted == wanted or _granted(path, uid, wanted) else wanted
    return IoAccess(uid, uid, read_only, needs)


def _make(path: str) -> None:
    """Create a missing io directory; as root, owned by the session user (pyhost made it)."""
    try:
        os.makedirs(path, exist_ok=True)
        if os.getuid() == 0:
            os.chown(path, sandbox_uid(), sandbox_uid())
    except OSError as exc:
        raise ConfigurationError(f"io={path!r}: cannot create the io directory: "
                                 f"{exc.strerror}; create it yourself or pass io=None") from exc


def _writable_by_us(path: str) -> bool:
    return os.access(path, os.W_OK | os.X_OK) and not _read_only_fs(path)


def _read_only_fs(path: str) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


# The POSIX ACL extended attribute (acl(5), linux/posix_acl_xattr.h): a little-endian u32
# version, then entries of (u16 tag, u16 permissions, u32 id), sorted by tag, then id.
_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF


def grant_user(path: str, uid: int, perms: int) -> None:
    """Give ``uid`` the permissions ``perms`` (rwx bits, e.g. 0o7) on ``path`` with an ACL
    entry, keeping every other entry, and widening the mask just enough to let it act.

    Raises:
        ConfigurationError: the filesystem has no ACLs, or the attribute cannot be set.
    """
    entries = {(tag, id_): perm for tag, perm, id_ in _read_acl(path)}
    entries[(_USER, uid)] = perms
    # As setfacl does: the mask becomes the union of the group class, so the new entry acts
    # and the owning group keeps exactly what it had (its own entry still limits it).
    entries[(_MASK, _NO_ID)] = functools.reduce(
        operator.or_, (perm for (tag, _), perm in entries.items()
                       if tag in (_USER, _GROUP_OBJ, _GROUP)), 0)
    blob = _HEADER.pack(_ACL_VERSION) + b"".join(
        _ENTRY.pack(tag, perm, id_) for (tag, id_), perm in sorted(entries.items()))
    try:
        os.setxattr(path, _ACL_XATTR, blob)
    except OSError as exc:
        how = ("its filesystem has no POSIX ACLs" if exc.errno in (errno.ENOTSUP,
                                                                     errno.EOPNOTSUPP)
               else exc.strerror)
        raise ConfigurationError(
            f"io={path!r} is root's and closed to others, and the session user (uid {uid}) "
            f"cannot be given access: {how}; make the directory writable by uid {uid} "
            f"(e.g. chown {uid} {path}), or pass a directory owned by a non-root user") \
            from exc
    log.info("io dir %s: granted uid %d %s through an ACL entry", path, uid,
             stat.filemode(perms)[-3:])


def _granted(path: str, uid: int, wanted: int) -> bool:
    """Whether an ACL entry already gives the session user ``wanted`` (and the mask lets it)."""
    try:
        entries = {(tag, id_): perm for tag, perm, id_ in _read_acl(path)}
    except ConfigurationError:
        return False
    mask = entries.get((_MASK, _NO_ID), 0o7)
    return entries.get((_USER, uid), 0) & mask & wanted == wanted


def _read_acl(path: str) -> list[tuple[int, int, int]]:
    """The access ACL of ``path`` as (tag, perm, id); the mode bits as an ACL if it has none."""
    try:
        blob = os.getxattr(path, _ACL_XATTR)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise ConfigurationError(f"io={path!r}: cannot read its ACL: {exc.strerror}") \
                from exc
        mode = os.stat(path).st_mode
        return [(_USER_OBJ, (mode >> 6) & 7, _NO_ID), (_GROUP_OBJ, (mode >> 3) & 7, _NO_ID),
                (_OTHER, mode & 7, _NO_ID)]
    return [_ENTRY.unpack_from(blob, offset)
            for offset in range(_HEADER.size, len(blob), _ENTRY.size)]
