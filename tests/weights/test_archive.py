"""safe_extract on real tar and zip files, good and malicious."""

import io
import random
import tarfile
import zipfile
from pathlib import Path

import pytest

from vidnets.weights.archive import ArchiveError, safe_extract


def make_tar(path: Path, members: list[tuple[str, bytes | None]], **links: str) -> Path:
    """Write a .tar.gz: (name, data) files, (name, None) directories, name=target symlinks."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


PAYLOAD = random.Random(0).randbytes(5000)
GOOD = [
    ("model/", None),
    ("model/checkpoint", b'model_checkpoint_path: "ckpt-1"\n'),
    ("model/ckpt-1.index", b"index"),
    ("model/sub/ckpt-1.data-00000-of-00001", PAYLOAD),
]


def assert_nothing_extracted(dest: Path) -> None:
    assert not dest.exists() or list(dest.iterdir()) == []


def test_extracts_single_top_directory(tmp_path):
    root = safe_extract(make_tar(tmp_path / "model.tar.gz", GOOD), tmp_path / "out")
    assert root == tmp_path / "out" / "model"
    assert (root / "sub" / "ckpt-1.data-00000-of-00001").read_bytes() == PAYLOAD
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model"]  # no temp dir left


def test_flat_archive_goes_under_archive_stem(tmp_path):
    archive = make_tar(tmp_path / "weights.tar.gz", [("./a.bin", b"a"), ("b.bin", b"b")])
    root = safe_extract(archive, tmp_path / "out")
    assert root == tmp_path / "out" / "weights"
    assert sorted(p.name for p in root.iterdir()) == ["a.bin", "b.bin"]


def test_zip(tmp_path):
    archive = tmp_path / "pack.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pack/x.txt", "hello")
        zf.writestr("pack/y/z.txt", "world")
    root = safe_extract(archive, tmp_path / "out")
    assert (root / "y" / "z.txt").read_text() == "world"


def test_existing_target_is_not_overwritten(tmp_path):
    archive = make_tar(tmp_path / "model.tar.gz", GOOD)
    safe_extract(archive, tmp_path / "out")
    with pytest.raises(ArchiveError, match="already exists"):
        safe_extract(archive, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model"]


@pytest.mark.parametrize(
    ("members", "links", "bad_name", "problem"),
    [
        ([("../evil", b"x")], {}, "../evil", "outside the destination"),
        ([("model/../../evil", b"x")], {}, "model/../../evil", "outside the destination"),
        ([("/etc/evil", b"x")], {}, "/etc/evil", "absolute path"),
        (GOOD, {"model/passwd": "/etc/passwd"}, "model/passwd", "symlink"),
        (GOOD, {"model/up": "../../x"}, "model/up", "symlink"),
    ],
)
def test_rejects_unsafe_tar_members(tmp_path, members, links, bad_name, problem):
    archive = make_tar(tmp_path / "bad.tar.gz", members, **links)
    with pytest.raises(ArchiveError, match=problem) as err:
        safe_extract(archive, tmp_path / "out")
    assert str(archive) in str(err.value) and repr(bad_name) in str(err.value)
    assert_nothing_extracted(tmp_path / "out")
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize("kind", [tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_rejects_links_and_special_files(tmp_path, kind):
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("model/data"), io.BytesIO())
        special = tarfile.TarInfo("model/special")
        special.type, special.linkname = kind, "model/data"
        tar.addfile(special)
    with pytest.raises(ArchiveError, match="'model/special' is a"):
        safe_extract(archive, tmp_path / "out")
    assert_nothing_extracted(tmp_path / "out")


def test_rejects_zip_symlink_and_traversal(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("pack/link")
        link.external_attr = (0o120777 << 16) | 0x20  # S_IFLNK
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ArchiveError, match="'pack/link' is a symlink"):
        safe_extract(archive, tmp_path / "out")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pack/ok", "fine")
        zf.writestr("..\\evil", "x")
    with pytest.raises(ArchiveError, match="backslash"):
        safe_extract(archive, tmp_path / "out")
    assert_nothing_extracted(tmp_path / "out")


def test_limits(tmp_path):
    archive = make_tar(tmp_path / "model.tar.gz", GOOD)
    with pytest.raises(ArchiveError, match="past the limit of 4096 bytes"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=4096)
    with pytest.raises(ArchiveError, match="4 members exceed the limit of 3"):
        safe_extract(archive, tmp_path / "out", max_members=3)
    assert_nothing_extracted(tmp_path / "out")


def test_unreadable_archives(tmp_path):
    with pytest.raises(ArchiveError, match="archive not found"):
        safe_extract(tmp_path / "missing.tar.gz", tmp_path / "out")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not an archive" * 10)
    with pytest.raises(ArchiveError, match="not a readable tar or zip"):
        safe_extract(junk, tmp_path / "out")
    data = make_tar(tmp_path / "model.tar.gz", GOOD).read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="cut.tar.gz"):
        safe_extract(cut, tmp_path / "out")
    assert_nothing_extracted(tmp_path / "out")
