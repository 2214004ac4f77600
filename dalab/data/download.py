"""Downloading a file from a list of mirrors, atomically and with a content check."""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from dalab.errors import DataError
from dalab.paths import atomic_path

TIMEOUT_S = 30.0


class DownloadError(DataError):
    """No mirror gave a file that passed its check; the message lists every attempt."""


def download_verified(urls: Sequence[str], dest: Path,
                      check: Callable[[Path], str | None] | None = None, *,
                      timeout: float = TIMEOUT_S) -> Path:
    """Download the first of ``urls`` that works and passes ``check`` to ``dest``.

    The file is written to a temporary name beside ``dest`` and renamed only once it
    passed ``check`` (which returns ``None`` when the file is good, else a reason), so
    ``dest`` never holds a partial or wrong file. A failing check deletes the partial
    file and the next URL is tried.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DownloadError
        When every URL failed; the message names each URL and why.
    """
    attempts: list[str] = []
    for url in urls:
        try:
            with atomic_path(dest) as tmp:
                _fetch(url, tmp, timeout)
                try:
                    problem = check(tmp) if check else None
                except DataError as err:  # e.g. not gzip data at all
                    problem = str(err)
                if problem:
                    raise _Rejected(f"{url}: checksum mismatch ({problem}); "
                                    f"deleted the partial file {tmp.name}")
            return dest
        except _Rejected as err:
            attempts.append(f"  {err}")
        except urllib.error.HTTPError as err:
            attempts.append(f"  {url}: HTTP {err.code} {err.reason}")
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", None) or err
            attempts.append(f"  {url}: {reason} (offline?)")
        except OSError as err:  # e.g. the cache folder is not writable
            raise DataError(f"cannot write {dest}: {err.strerror or err}; choose a writable "
                            "cache folder (--cache-dir or $DALAB_CACHE)") from None
    raise DownloadError(f"could not download {dest.name}:\n" + "\n".join(attempts))


def file_md5(path: Path) -> str:
    """The md5 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def md5_check(expected: str) -> Callable[[Path], str | None]:
    """A ``check`` for :func:`download_verified`: the file's md5 must be ``expected``."""
    def check(path: Path) -> str | None:
        got = file_md5(path)
        return None if got == expected else f"md5 {got}, expected {expected}"
    return check


class _Rejected(Exception):
    pass


def _fetch(url: str, path: Path, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "dalab"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as out:
        shutil.copyfileobj(response, out, length=1 << 20)
