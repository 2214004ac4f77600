"""Downloads against a local HTTP server on 127.0.0.1: success, bad checksum, HTTP errors."""

from __future__ import annotations

import gzip
import http.server
import socket
import threading

import pytest

from dalab.data import load_domain
from dalab.data import mnist as mnist_module
from dalab.data.download import DownloadError, download_verified
from dalab.data.mnist import PAYLOAD_MD5, download_mnist_file

LABELS = "t10k-labels-idx1-ubyte"


class Server:
    """Serves ``files`` (URL path -> bytes); other paths answer ``status.get(path, 404)``."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                if self.path in outer.files:
                    body = outer.files[self.path]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(outer.status.get(self.path, 404))

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with Server() as srv:
        yield srv


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_success_checks_the_payload_md5(server, data_root, tmp_path):
    real = (data_root / "mnist" / f"{LABELS}.gz").read_bytes()
    server.files[f"/m/{LABELS}.gz"] = real
    path = download_mnist_file(LABELS, tmp_path, (server.url + "/m/",))
    assert path == tmp_path / f"{LABELS}.gz" and path.read_bytes() == real
    assert _leftovers(tmp_path) == [f"{LABELS}.gz"]


def test_checksum_mismatch_deletes_the_partial_file(server, tmp_path):
    server.files[f"/m/{LABELS}.gz"] = gzip.compress(b"\x00\x00\x08\x01" + bytes(8))
    with pytest.raises(DownloadError, match=r"checksum mismatch \(md5 of decompressed payload "
                       rf"is [0-9a-f]+, expected {PAYLOAD_MD5[LABELS]}\); deleted the partial"):
        download_mnist_file(LABELS, tmp_path, (server.url + "/m/",))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("code", [404, 500])
def test_http_errors_are_reported_per_mirror(server, tmp_path, code):
    server.status[f"/m/{LABELS}.gz"] = code
    with pytest.raises(DownloadError, match=rf"/m/{LABELS}.gz: HTTP {code}"):
        download_mnist_file(LABELS, tmp_path, (server.url + "/m/",))
    assert _leftovers(tmp_path) == []


def test_next_mirror_is_tried(server, data_root, tmp_path):
    server.files[f"/good/{LABELS}.gz"] = (data_root / "mnist" / f"{LABELS}.gz").read_bytes()
    download_mnist_file(LABELS, tmp_path, (server.url + "/bad/", server.url + "/good/"))
    assert server.requests == [f"/bad/{LABELS}.gz", f"/good/{LABELS}.gz"]


def test_unreachable_mirror_says_offline(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match="offline"):
        download_verified([f"http://127.0.0.1:{port}/x.gz"], tmp_path / "x.gz", timeout=5)


def test_check_accepting_file_and_rejecting_garbage(server, tmp_path):
    server.files["/a"] = b"hello"
    download_verified([server.url + "/a"], tmp_path / "a", lambda p: None)
    assert (tmp_path / "a").read_bytes() == b"hello"
    server.files[f"/{LABELS}.gz"] = b"not gzip"
    with pytest.raises(DownloadError, match="checksum mismatch .*not a gzip file"):
        download_mnist_file(LABELS, tmp_path / "b", (server.url + "/",))


def test_load_mnist_downloads_missing_files(server, data_root, tmp_path, monkeypatch):
    for name in PAYLOAD_MD5:
        server.files[f"/mnist/{name}.gz"] = (data_root / "mnist" / f"{name}.gz").read_bytes()
    monkeypatch.setattr(mnist_module, "MIRRORS", (server.url + "/mnist/",))
    test = load_domain("mnist", tmp_path / "empty-root", tmp_path / "cache").split("test")
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert _leftovers(tmp_path / "cache" / "mnist") == sorted(f"{n}.gz" for n in PAYLOAD_MD5)
    assert len(server.requests) == 4
