"""download() against a real local HTTP server that can cut connections and corrupt data."""

import hashlib
import io
import random
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vidnets.weights.archive import safe_extract
from vidnets.weights.download import DownloadError, cache_dir, download

PAYLOAD = random.Random(0).randbytes(200_000)


def make_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("model/weights.bin")
        info.size = len(PAYLOAD)
        tar.addfile(info, io.BytesIO(PAYLOAD))
    return buf.getvalue()


ARCHIVE = make_archive()
SHA256 = hashlib.sha256(ARCHIVE).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serves ARCHIVE at /model.tar.gz, honouring Range if the server allows it."""

    def do_GET(self):
        server = self.server
        server.ranges.append(self.headers.get("Range"))
        if self.path != "/model.tar.gz":
            self.send_error(404)
            return
        start, range_header = 0, self.headers.get("Range")
        if range_header and server.ranges_supported:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(ARCHIVE) - 1}/{len(ARCHIVE)}")
        else:
            self.send_response(200)
        body = ARCHIVE[start:]
        if server.corrupt:
            body = bytes([body[0] ^ 1]) + body[1:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cuts_left:
            server.cuts_left -= 1
            body = body[: server.cut_after]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.ranges, httpd.ranges_supported, httpd.corrupt = [], True, False
    httpd.cuts_left, httpd.cut_after = 0, 0
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/model.tar.gz"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_download_verify_and_extract(server, tmp_path):
    path = download(server.url, tmp_path, sha256=SHA256.upper(), timeout=5)
    assert path == tmp_path / "model.tar.gz" and path.read_bytes() == ARCHIVE
    assert not (tmp_path / "model.tar.gz.part").exists()
    root = safe_extract(path, tmp_path / "extracted")
    assert (root / "weights.bin").read_bytes() == PAYLOAD
    # Cached: verified locally, no second request.
    assert download(server.url, tmp_path, sha256=SHA256, timeout=5) == path
    assert server.ranges == [None]


def test_truncated_download_is_resumed_with_range(server, tmp_path):
    server.cuts_left, server.cut_after = 1, 50_000
    path = download(server.url, tmp_path / "ckpt.tgz", sha256=SHA256, progress=True, timeout=5)
    assert path.read_bytes() == ARCHIVE
    assert server.ranges == [None, "bytes=50000-"]


def test_truncated_download_restarts_without_range_support(server, tmp_path):
    server.cuts_left, server.cut_after, server.ranges_supported = 2, 1000, False
    path = download(server.url, tmp_path, sha256=SHA256, progress=False, timeout=5)
    assert path.read_bytes() == ARCHIVE
    assert server.ranges == [None, "bytes=1000-", "bytes=1000-"]


def test_gives_up_after_retries(server, tmp_path):
    server.cuts_left, server.cut_after = 10, 10
    with pytest.raises(DownloadError, match="failed after 2 attempts") as err:
        download(server.url, tmp_path, retries=1, progress=False, timeout=5)
    assert server.url in str(err.value)
    assert not (tmp_path / "model.tar.gz").exists()


def test_sha256_mismatch_leaves_nothing(server, tmp_path):
    server.corrupt = True
    with pytest.raises(DownloadError, match="sha256 mismatch") as err:
        download(server.url, tmp_path, sha256=SHA256, progress=False, timeout=5)
    message = str(err.value)
    assert server.url in message and SHA256 in message
    assert hashlib.sha256(bytes([ARCHIVE[0] ^ 1]) + ARCHIVE[1:]).hexdigest() in message
    assert list(tmp_path.iterdir()) == []


def test_existing_file_with_wrong_hash_is_replaced(server, tmp_path):
    (tmp_path / "model.tar.gz").write_bytes(b"stale")
    path = download(server.url, tmp_path, sha256=SHA256, progress=False, timeout=5)
    assert path.read_bytes() == ARCHIVE and len(server.ranges) == 1


def test_http_404_is_not_retried(server, tmp_path):
    url = server.url.replace("model.tar.gz", "missing.tar.gz")
    with pytest.raises(DownloadError, match="HTTP error 404") as err:
        download(url, tmp_path, progress=False, timeout=5)
    assert url in str(err.value)
    assert len(server.ranges) == 1 and list(tmp_path.iterdir()) == []


def test_local_path_and_file_url(tmp_path):
    source = tmp_path / "src" / "model.tar.gz"
    source.parent.mkdir()
    source.write_bytes(ARCHIVE)
    by_path = download(str(source), tmp_path / "a.tar.gz", sha256=SHA256)
    by_url = download(source.as_uri(), tmp_path / "b.tar.gz", sha256=SHA256)
    assert by_path.read_bytes() == by_url.read_bytes() == ARCHIVE
    with pytest.raises(DownloadError, match="no such file"):
        download((tmp_path / "nope.bin").as_uri(), tmp_path / "c.bin")


def test_default_destination_is_cache_dir(server, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDNETS_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    assert download(server.url, progress=False, timeout=5) == tmp_path / "cache" / "model.tar.gz"
    monkeypatch.delenv("VIDNETS_CACHE")
    assert cache_dir().parts[-2:] == (".cache", "vidnets")
