"""Images kept on disk as the rows of a .npy file, written and read a block at a time.

A decoded-image cache entry (data/cache.py) holds each split's images as one uint8 .npy file.
`Writer` fills it block by block as the decoder finishes them (pwrite, not a writable map, whose
dirty pages would count in the process's resident memory); `Rows` reads the rows a batch asks for
and lets their pages go again, so a fit over 100,000 images holds a few batches, not the file.

A read that fails (an image file of data.cache: none gone or broken since the data set was read, a
cache file truncated under a fit) raises our error, and records it: a read inside TensorFlow
(tf.numpy_function) reaches the user as TensorFlow's own error, and the CLI's edge gives the
recorded one instead (`failure`).
"""
from __future__ import annotations

import mmap
import os
import weakref

import numpy as np

from cnntrain.errors import CnntrainError, DataChanged

# The header is always this long, padded: the row offset is known before a row is written, and
# rewriting the shape after data.on_broken: skip left rows out never moves the rows.
HEADER_BYTES = 128


def header(shape, dtype=np.uint8) -> bytes:
    """The .npy (version 1.0) header of an array of `shape`, padded to HEADER_BYTES."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                 "shape": tuple(int(s) for s in shape)})
    room = HEADER_BYTES - 10 - 1
    return b"\x93NUMPY\x01\x00" + (HEADER_BYTES - 10).to_bytes(2, "little") + \
        text.ljust(room).encode("latin1") + b"\n"


def _row_bytes(row_shape, dtype) -> int:
    return int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize


class Writer:
    """A .npy file of `shape` written in blocks of rows, from any thread (pwrite needs no seek)."""

    def __init__(self, path: str, shape, dtype=np.uint8):
        self.path, self.shape, self.dtype = path, tuple(int(s) for s in shape), np.dtype(dtype)
        self.row_bytes = _row_bytes(self.shape[1:], self.dtype)
        self.fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        self._closer = weakref.finalize(self, os.close, self.fd)
        _pwrite(self.fd, header(self.shape, self.dtype), 0)
        os.ftruncate(self.fd, HEADER_BYTES + self.shape[0] * self.row_bytes)

    def __len__(self) -> int:
        return self.shape[0]

    def block(self, lo: int, hi: int) -> np.ndarray:
        """A buffer for rows lo..hi: a block's worth of memory, not the file's."""
        return np.empty((hi - lo, *self.shape[1:]), self.dtype)

    def put(self, lo: int, block: np.ndarray) -> None:
        _pwrite(self.fd, np.ascontiguousarray(block).data.cast("B"), HEADER_BYTES + lo * self.row_bytes)

    def keep(self, kept: np.ndarray | None) -> Writer:
        """Only the rows `kept` (ascending; None: all), moved down in place; the header says the new count."""
        if kept is None:
            return self
        reader = Rows(self.path, HEADER_BYTES, self.shape, self.dtype)
        step = max(1, (8 << 20) // max(1, self.row_bytes))
        for lo in range(0, len(kept), step):
            self.put(lo, reader[kept[lo:lo + step]])
        self.shape = (len(kept), *self.shape[1:])
        _pwrite(self.fd, header(self.shape, self.dtype), 0)
        os.ftruncate(self.fd, HEADER_BYTES + self.shape[0] * self.row_bytes)
        return self

    def close(self) -> None:
        """Flushed to the disk and closed: what a manifest may then vouch for."""
        os.fsync(self.fd)
        self._closer()


def _pwrite(fd: int, data, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


# Bytes a map may have read before its pages are let go: the resident memory reading adds, and
# what a batch read again soon after finds without a page fault.
RESIDENT_BYTES = 64 << 20


# The error the last failed read raised (its text is the user's message, TensorFlow's is not).
_failed: list[CnntrainError] = []


def failure() -> CnntrainError | None:
    """The error the last failed read of images raised, or None."""
    return _failed[-1] if _failed else None


def forget() -> None:
    """No read has failed (so far): a run starts without an earlier run's failure."""
    _failed.clear()


# Images a caller that goes through a whole split reads at once (evaluate's test-time views, an
# export's check): its memory, whatever the split's size.
BLOCK_BYTES = 32 << 20


def blocks(x, multiple: int = 1):
    """The images of `x` (an array, or a Lazy: read now) as arrays of consecutive rows, each of at
    most BLOCK_BYTES and a multiple of `multiple` rows (the last one the rest): a batch that starts a
    block starts a batch of the whole."""
    row = max(1, int(np.prod(x.shape[1:], dtype=np.int64)) * np.dtype(x.dtype).itemsize)
    step = max(1, BLOCK_BYTES // row // multiple) * multiple
    for lo in range(0, len(x), step):
        yield np.asarray(x[lo:lo + step])


class _File:
    """One read-only map of a file shared by its Rows and their subsets, unmapped with the last.
    The file stays open: a read past the end of a map of a file truncated since is a SIGBUS that
    kills the process, so each batch first asks the open file its size (one fstat)."""

    def __init__(self, path: str):
        self.path, self.fd = path, os.open(path, os.O_RDONLY)
        self._closer = weakref.finalize(self, os.close, self.fd)
        self.map = mmap.mmap(self.fd, 0, prot=mmap.PROT_READ)
        self.read = 0

    def holds(self, end: int) -> None:
        """Raises DataChanged unless the file still reaches byte `end`."""
        size = os.fstat(self.fd).st_size
        if size < end:
            raise DataChanged(f"the decoded-image cache file is {size:,} bytes, shorter than the {end:,} its "
                               "images need: it was truncated or overwritten while in use", file=self.path,
                               hint="run the command again: a damaged cache entry is removed and built again "
                                    "('cnntrain data cache clear' removes every entry)")

    def touched(self, nbytes: int) -> None:
        # Racing threads may miscount a batch: the bound moves by a batch, nothing else.
        self.read += nbytes
        if self.read > RESIDENT_BYTES:
            self.read = 0
            self.map.madvise(mmap.MADV_DONTNEED)


class Lazy:
    """Images (or a subset of them, by index) as an array that is read when indexed: `x[i]`,
    `x[a:b]` and `x[index_array]` return numpy arrays; `subset(index)` is another of the same kind,
    nothing read. len, shape, dtype, ndim and nbytes as numpy's. Subclasses fetch rows."""

    def __init__(self, total: int, row_shape, dtype, index=None):
        self.total, self.row_shape, self.dtype = int(total), tuple(int(s) for s in row_shape), np.dtype(dtype)
        self.row_bytes = _row_bytes(self.row_shape, self.dtype)
        self.index = None if index is None else np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return self.total if self.index is None else len(self.index)

    @property
    def shape(self) -> tuple:
        return (len(self), *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    @property
    def nbytes(self) -> int:
        return len(self) * self.row_bytes

    def subset(self, index) -> Lazy:
        index = np.asarray(index, dtype=np.int64)
        return self._with(index if self.index is None else self.index[index])

    def _with(self, index) -> Lazy:
        raise NotImplementedError

    def _fetch(self, rows: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.read(np.arange(len(self))[[key]])[0]
        if isinstance(key, slice):
            return self.read(np.arange(len(self))[key])
        return self.read(np.asarray(key))

    def read(self, positions) -> np.ndarray:
        """The images at `positions` (of this array)."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        rows = positions if self.index is None else self.index[positions]
        if len(rows) and (rows.min() < 0 or rows.max() >= self.total):
            raise IndexError(f"row {int(rows.max() if rows.max() >= self.total else rows.min())} of "
                             f"{self.total} rows")
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        try:
            self._fetch(rows, out)
        except CnntrainError as exc:
            _failed[:] = [exc]
            raise
        return out

    def __array__(self, dtype=None, copy=None):
        # Every image in memory: for the few callers that need the whole array (a small split).
        a = self.read(np.arange(len(self)))
        return a if dtype is None else a.astype(dtype)


class Rows(Lazy):
    """The images of a .npy file. A read gathers the rows from a read-only memory map in one numpy
    call (a batch of 256 32x32 images in 0.5 ms, where one pread a row took 2.5), and every
    RESIDENT_BYTES read the kernel is told the process is done with the pages (MADV_DONTNEED): they
    stay in the page cache, shared, but leave this process's resident set, which a map would
    otherwise grow to the whole file."""

    def __init__(self, path: str, offset: int, shape, dtype=np.uint8, index=None, file: _File | None = None):
        super().__init__(shape[0], shape[1:], dtype, index)
        self.path, self.offset = path, int(offset)
        self._file = file or _File(path)
        self.end = self.offset + self.total * self.row_bytes
        if len(self._file.map) < self.end:
            raise OSError(f"{path} ends before row {self.total - 1}")
        self._all = np.frombuffer(self._file.map, self.dtype, count=self.total * self.row_bytes // self.dtype.itemsize,
                                  offset=self.offset).reshape(self.total, *self.row_shape)

    def _with(self, index) -> Rows:
        return Rows(self.path, self.offset, (self.total, *self.row_shape), self.dtype, index, self._file)

    def _fetch(self, rows: np.ndarray, out: np.ndarray) -> None:
        self._file.holds(self.end)
        np.take(self._all, rows, axis=0, out=out)
        self._file.touched(out.nbytes)


class Decoding(Lazy):
    """Image files decoded each time they are read (data.cache: none): no cache, no memory held,
    every epoch's decode. `decode` turns one item into its (H, W, C) pixels."""

    def __init__(self, items: list, decode, row_shape, index=None):
        super().__init__(len(items), row_shape, np.uint8, index)
        self.items, self.decode = items, decode

    def _with(self, index) -> Decoding:
        return Decoding(self.items, self.decode, self.row_shape, index)

    def _fetch(self, rows: np.ndarray, out: np.ndarray) -> None:
        for j, r in enumerate(rows):
            try:
                out[j] = self.decode(self.items[int(r)])
            except CnntrainError as exc:
                raise DataChanged(
                    f"{exc.message}; it was read when the data set was loaded, and data.cache: none decodes "
                    "every image again each time it is fed", file=exc.file,
                    hint="put the file back as it was and run the command again, or run it again without "
                         "the file (data.on_broken: skip leaves out the files unreadable when the data set "
                         "is loaded, not those that break later); data.cache: auto or disk decodes each "
                         "image once, before training") from None
