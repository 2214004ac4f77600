"""Reading IDX files (the MNIST format), gzipped or not, with full validation.

IDX layout: a big-endian int32 magic number (2051 for images, 2049 for labels), one
big-endian int32 per dimension (count, then rows and columns for images), then the raw
uint8 data. Every problem is reported as a :class:`~dalab.errors.DataError` naming the
file and what is wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from dalab.errors import DataError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension


def read_payload(path: str | os.PathLike) -> bytes:
    """The decompressed bytes of ``path`` (read as gzip when it starts with the gzip magic).

    Raises
    ------
    DataError
        When the file cannot be read or is a corrupt or truncated gzip stream.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    if raw[:2] != b"\x1f\x8b":
        if path.suffix == ".gz":
            raise DataError(f"{path}: not a gzip file (bad gzip magic bytes {raw[:2]!r})")
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip data ({err})") from None


def payload_md5(payload: bytes) -> str:
    """The md5 hex digest of a decompressed payload (as in the datasets' checksum table)."""
    return hashlib.md5(payload).hexdigest()


def parse_images(payload: bytes, name: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Parse an IDX image payload into a ``(N, rows, cols)`` uint8 array (a view of it).

    Raises
    ------
    DataError
        On a bad magic number, bad dimensions or a size that does not match the header.
    """
    count, rows, cols = _header(payload, name, IMAGES_MAGIC, "images", ndim=3)
    if rows <= 0 or cols <= 0:
        raise DataError(f"{name}: bad image dimensions {rows}x{cols} in the header")
    data = _body(payload, name, 16, count * rows * cols, f"{count} images of {rows}x{cols}")
    return data.reshape(count, rows, cols)


def parse_labels(payload: bytes, name: str | os.PathLike = "<bytes>", *,
                 num_classes: int = 10) -> np.ndarray:
    """Parse an IDX label payload into an ``(N,)`` uint8 array, each in ``[0, num_classes)``.

    Raises
    ------
    DataError
        On a bad magic number, a size that does not match the header or a label out of range.
    """
    (count,) = _header(payload, name, LABELS_MAGIC, "labels", ndim=1)
    labels = _body(payload, name, 8, count, f"{count} labels")
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise DataError(
            f"{name}: label {int(labels[bad])} at index {bad} is out of range "
            f"(expected 0..{num_classes - 1})"
        )
    return labels


def _header(payload: bytes, name, magic: int, kind: str, ndim: int) -> tuple[int, ...]:
    if len(payload) < 4:
        raise DataError(f"{name}: truncated IDX header ({len(payload)} bytes, no magic number)")
    (found,) = struct.unpack(">i", payload[:4])
    if found != magic:
        other = {IMAGES_MAGIC: "an images", LABELS_MAGIC: "a labels"}.get(found)
        hint = f"; this is {other} file" if other else ""
        raise DataError(
            f"{name}: bad magic number {found} (expected {magic} for an IDX {kind} file{hint})"
        )
    need = 4 + 4 * ndim
    if len(payload) < need:
        raise DataError(
            f"{name}: truncated IDX header ({len(payload)} bytes, need {need} for {kind})"
        )
    dims = struct.unpack(f">{ndim}i", payload[4:need])
    if dims[0] < 0:
        raise DataError(f"{name}: negative item count {dims[0]} in the header")
    return dims


def _body(payload: bytes, name, offset: int, size: int, what: str) -> np.ndarray:
    have = len(payload) - offset
    if have < size:
        raise DataError(
            f"{name}: truncated: header announces {what} ({size} bytes) "
            f"but only {have} bytes of data follow"
        )
    if have > size:
        raise DataError(
            f"{name}: {have - size} unexpected trailing bytes after {what} "
            "(wrong dimensions in the header?)"
        )
    return np.frombuffer(payload, dtype=np.uint8, count=size, offset=offset)


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Read and cross-check one images/labels file pair.

    Returns
    -------
    images, labels, md5
        ``(N, 28, 28)`` and ``(N,)`` uint8 arrays and an md5 over both payloads.
    """
    img_payload = read_payload(images_path)
    lab_payload = read_payload(labels_path)
    images = parse_images(img_payload, images_path)
    labels = parse_labels(lab_payload, labels_path)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has "
            f"{len(labels)} labels; the counts must match"
        )
    digest = hashlib.md5(img_payload)
    digest.update(lab_payload)
    return images, labels, digest.hexdigest()
