"""Files and directories that root can trust and the server user can reach.

As root, when the server user cannot reach the checkout, the binaries are copied to
SYSTEM_DIR/pg/<version>-<hash of their path> and the cluster lives in
SYSTEM_DIR/homes/<hash of the home's path>: directories owned by root, 0755, with only the data
directory (0700) owned by the server user. Nothing there is reused before it is checked, and no
link is ever followed: a file of ours is created with ``O_EXCL`` or renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

from pgsched.errors import ServerError
from pgsched.server.process import can_access_as, run_as

SYSTEM_DIR = Path("/var/lib/pgsched")
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def path_key(path: Path, length: int) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:length]


def _trusted_ancestors(path: Path) -> None:
    """``path`` and every directory above it: owned by root (or us), writable by no one else
    (sticky directories such as /tmp excepted)."""
    me = os.geteuid()
    for p in [path, *path.parents]:
        st = os.stat(p)
        sticky = st.st_mode & stat.S_ISVTX
        if st.st_uid not in (0, me) or (st.st_mode & 0o022 and not sticky):
            raise ServerError(
                f"{p} can be changed by another user: pgsched keeps server files only under "
                f"directories owned by root (fix its owner or mode)"
            )


def open_dir(path: Path) -> int:
    try:
        return os.open(path, _NOFOLLOW_DIR)
    except OSError as e:
        raise ServerError(f"{path} is not a real directory: {e.strerror}") from None


def _secure_dir(path: Path, mode: int = 0o755) -> Path:
    """Create ``path`` (or accept it) as a real directory owned by us, writable only by us."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    fd = open_dir(path)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise ServerError(
                f"{path} belongs to uid {st.st_uid}, not to this user: remove it and run again"
            )
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    _trusted_ancestors(path.parent)
    return path


def system_dir(*parts: str) -> Path:
    path = _secure_dir(SYSTEM_DIR)
    for part in parts:
        path = _secure_dir(path / part)
    return path


def scratch_dir(user: pwd.struct_passwd | None) -> Path:
    """A new directory for a throwaway cluster, owned by us, 0755, that ``user`` can reach."""
    parent = None
    if user is not None and not can_access_as(user, Path(tempfile.gettempdir()), "x"):
        parent = system_dir("tmp")
    path = Path(tempfile.mkdtemp(prefix="pgsched-", dir=parent))
    path.chmod(0o755)
    return path


def make_owned_dir(path: Path, user: pwd.struct_passwd, mode: int) -> None:
    """Create ``path`` (or take the existing real directory) and give it to ``user``, never
    following a symbolic link."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    fd = open_dir(path)
    try:
        os.fchown(fd, user.pw_uid, user.pw_gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def private_entry(dir_path: Path, name: str, owner: int) -> bool:
    """Whether ``dir_path/name`` is a regular file owned by ``owner`` with one link. Anything
    else there (a symbolic or hard link planted while the directory was another user's) is
    removed, never followed, so the caller creates the file afresh."""
    path = dir_path / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISREG(st.st_mode) and st.st_uid == owner and st.st_nlink == 1:
        return True
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
    return False


def touch_owned(path: Path, user: pwd.struct_passwd) -> None:
    """Create the file ``path`` for ``user`` in a directory of ours (``O_EXCL``: never through
    a link, never an existing file), unless it already is ``user``'s own regular file."""
    if private_entry(path.parent, path.name, user.pw_uid):
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchown(fd, user.pw_uid, user.pw_gid)
    finally:
        os.close(fd)


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with a file of ours holding ``text``: written to a new name with
    ``O_EXCL`` and renamed over the old entry, so whatever was there (a link to another file)
    is replaced, never written through."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_private_log(path: Path) -> int:
    """A log file of ours, 0600, opened for appending: an existing entry is used only if it is
    our own regular file (no link followed), else it is replaced."""
    if not private_entry(path.parent, path.name, os.geteuid()):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    else:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        os.fchmod(fd, 0o600)
    os.lseek(fd, 0, os.SEEK_END)
    return fd


def write_as(user: pwd.struct_passwd | None, path: Path, text: str, append: bool) -> None:
    """Write a file of the server's own (in its data directory) as the server user: root never
    opens a path inside a directory another user owns."""
    if user is None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
        with os.fdopen(os.open(path, flags, 0o600), "w") as f:
            f.write(text)
        return
    redirect = ">>" if append else ">"
    run_as(["/bin/sh", "-c", f'umask 077; cat {redirect} "$1"', "sh", str(path)], user, input=text)
