"""Small files that claim, or inflate to, gigabytes: real deflate, gzip, zip, tar and pickle
layouts, built in milliseconds (one compressed block of zeros, repeated), for tests/test_bounds.py."""
from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zlib

import numpy as np

MIB = 1 << 20
GIB = 1 << 30


def _zero_block() -> tuple[zlib._Compress, bytes]:
    # After a full flush the compressor starts afresh, so 1 MiB of zeros compresses to the same
    # 1,037 bytes every time: n copies of them inflate to n MiB.
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c, c.compress(bytes(MIB)) + c.flush(zlib.Z_FULL_FLUSH)


def deflate(prefix: bytes, zeros: int, suffix: bytes = b"") -> bytes:
    """A raw deflate stream of `prefix`, then `zeros` zero bytes (a multiple of 1 MiB), then `suffix`."""
    assert zeros % MIB == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    _, block = _zero_block()
    return head + block * (zeros // MIB) + c.compress(suffix) + c.flush()


def gzip_of(prefix: bytes, zeros: int, suffix: bytes = b"") -> bytes:
    """A gzip file of the same; its CRC is left wrong (nothing should read that far)."""
    size = (len(prefix) + zeros + len(suffix)) & 0xFFFFFFFF
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + deflate(prefix, zeros, suffix)
            + struct.pack("<II", 0, size))


def zip_of(members: dict[str, bytes | int]) -> bytes:
    """A zip archive: name -> bytes (stored) or an int N (deflated zeros, N bytes, declared as such)."""
    out, central = io.BytesIO(), []
    for name, data in members.items():
        if isinstance(data, int):
            body, size, crc, method = deflate(b"", data), data, 0, 8
        else:
            body, size, crc, method = data, len(data), zlib.crc32(data), 0
        offset, raw = out.tell(), name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(body), size,
                              len(raw), 0) + raw + body)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc,
                                   len(body), size, len(raw), 0, 0, 0, 0, 0, offset) + raw)
    start = out.tell()
    for entry in central:
        out.write(entry)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), out.tell() - start,
                          start, 0))
    return out.getvalue()


def keras_file(bomb_member: str, size: int) -> bytes:
    """A .keras zip in Keras' layout whose `bomb_member` inflates to `size` bytes of zeros."""
    members = {"metadata.json": b'{"keras_version": "3.15.0"}', "config.json": b"{}",
               "model.weights.h5": b"", "cnntrain.json": b'{"class_names": ["0", "1"]}'}
    members[bomb_member] = size
    return zip_of(members)


def tar_gz_with_zeros(files: dict[str, bytes], big_name: str, big_size: int, count: int = 1) -> bytes:
    """A .tar.gz of `files`, then `count` members named big_name (the second on named NAME-1.EXT, NAME-2.EXT, ...) of
    `big_size` zero bytes each."""
    plain = b""
    for name, data in files.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        plain += info.tobuf(format=tarfile.GNU_FORMAT) + data + bytes(-len(data) % 512)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = c.compress(plain)
    _, block = _zero_block()
    for i in range(count):
        info = tarfile.TarInfo(big_name if i == 0 else big_name.replace(".", f"-{i}.", 1))
        info.size = big_size
        stream += c.compress(info.tobuf(format=tarfile.GNU_FORMAT)) + c.flush(zlib.Z_FULL_FLUSH)
        stream += block * (big_size // MIB)
    stream += c.compress(bytes(1024)) + c.flush()
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stream + struct.pack("<II", 0, 0)


def idx_gz_claiming(count: int, rows: int = 28, cols: int = 28, zeros: int = 0) -> bytes:
    """An IDX image file (gzipped) whose header claims `count` images, followed by `zeros` bytes."""
    header = struct.pack(">IIII", 0x00000803, count, rows, cols)
    return gzip_of(header, zeros) if zeros else gzip.compress(header)


def cifar_batch_with_shared_labels(images: int = 10, width: int = 10_000, rows: int = 5_000) -> bytes:
    """A CIFAR-10 batch of `images` images whose labels are one list of `width` ints shared
    `rows` times, that table shared once per image: tens of KB that np.asarray makes
    images x rows x width int64s (4 GB with the defaults)."""
    row = [0] * width
    table = [row] * rows
    data = np.zeros((images, 3072), np.uint8)
    return pickle.dumps({b"batch_label": b"batch", b"labels": [table] * images, b"data": data,
                         b"filenames": [b"f.png"] * images}, protocol=4)
