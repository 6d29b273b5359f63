"""Reading tar archives (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) in memory,
member by member, without extracting anything to disk.

Nothing is written out, but a member's name still becomes a path in our
layout logic and in messages, so the same members that extraction would make
dangerous are refused outright: absolute names, '..' components, links and
devices. An archive of data has no reason to hold any of them.
"""
from __future__ import annotations

import os
import posixpath
import tarfile
import zlib
from collections.abc import Callable, Iterator

from .checks import fail

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

# What the wanted members may add up to: a data archive is mostly images that are compressed
# already, so its members hold about what the archive does (CIFAR-10 as JPEGs: 1.1x). Beyond
# this many times the archive's size, and past a floor for small archives, it is a
# decompression bomb (3 MB of gzip can hold 3 GiB of zeros).
MAX_RATIO = 64
MIN_BUDGET = 256 << 20

# What a truncated or corrupt compressed tar raises, depending on where it breaks.
_BROKEN = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError)


def is_tar_name(path: str) -> bool:
    return path.lower().endswith(TAR_SUFFIXES)


def _check(member: tarfile.TarInfo, path: str) -> str:
    name = member.name
    kind = None
    if member.issym() or member.islnk():
        kind = f"a {'symbolic' if member.issym() else 'hard'} link to '{member.linkname}'"
    elif member.isdev():
        kind = "a device or FIFO"
    elif not (member.isfile() or member.isdir()):
        kind = f"an entry of tar type {member.type!r}"
    elif name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        kind = "an absolute path"
    elif ".." in name.replace("\\", "/").split("/"):
        kind = "a path with a '..' component"
    if kind:
        raise fail(f"refusing archive member '{name}': it is {kind}; a data archive holds only "
                   "plain files and folders with relative names", path,
                   hint="rebuild the archive from a plain folder, e.g. tar czf data.tar.gz DIR")
    # "./train/cat/1.png" and "train//cat/1.png" both mean train/cat/1.png.
    name = posixpath.normpath(name)
    return "" if name == "." else name


def members(path: str, want: Callable[[str], bool],
            check: Callable[[str, int], None]) -> Iterator[tuple[str, bytes | None]]:
    """Yields (name, bytes) for wanted files and (name, None) for folders, in
    archive order. Every member is checked, wanted or not; `check(name, size)` raises for a
    wanted member too large for what it claims to be, before it is read."""
    held = 0
    try:
        budget = max(MIN_BUDGET, MAX_RATIO * os.path.getsize(path))
        # Stream mode ("r|*"): one sequential pass through the decompressor,
        # no seeking back, compression detected from the bytes.
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                name = _check(member, path)
                if member.isdir():
                    if name:
                        yield name, None
                elif want(name):
                    check(name, member.size)
                    held += member.size
                    if held > budget:
                        raise fail(f"member '{name}': the wanted members come to more than {budget:,} "
                                   f"bytes, over {MAX_RATIO} times the archive's size; refusing what "
                                   "looks like a decompression bomb", path,
                                   hint="if the archive is genuine, extract it and give the folder as "
                                        "data.path")
                    f = tar.extractfile(member)
                    data = f.read()
                    if len(data) != member.size:
                        raise tarfile.ReadError(f"unexpected end of data in member '{name}'")
                    yield name, data
    except _BROKEN as e:
        if isinstance(e, OSError) and not isinstance(e, EOFError) and e.errno is not None:
            raise fail(f"cannot be read ({e.strerror or e})", path) from e
        raise fail(f"cannot be read as a tar archive ({type(e).__name__}: {e}); the file is "
                   "truncated or corrupt", path,
                   hint="copy or download the archive again") from e
