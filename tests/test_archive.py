import io
import os
import tarfile
import zipfile

import pytest

from arena.intake.archive import RATIO_FLOOR, ArchiveError, extract, pack, tree_sha256

LIMITS = dict(max_bytes=10_000, max_files=20)


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def test_single_top_folder_becomes_the_root(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [_file("sub/metadata.json", b"{}"), _file("sub/run.sh")])
    root = extract(archive, tmp_path / "out", **LIMITS)
    assert root.name == "sub" and (root / "metadata.json").is_file()


@pytest.mark.parametrize(
    "member, message",
    [
        (_file("../evil.sh"), "path traversal"),
        (_file("/etc/evil"), "absolute path"),
        (_link("sub/link", "/etc/passwd"), "links outside"),
        (_link("sub/link", "../../etc/passwd"), "links outside"),
        (_link("sub/hard", "/etc/shadow", tarfile.LNKTYPE), "links outside"),
    ],
)
def test_hostile_tar_members_are_refused(tmp_path, member, message):
    archive = _tar(tmp_path / "a.tar.gz", [_file("sub/ok"), member])
    with pytest.raises(ArchiveError, match=message):
        extract(archive, tmp_path / "out", **LIMITS)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.sh").exists()


def test_zip_traversal_symlink_and_bomb_are_refused(tmp_path):
    traversal = tmp_path / "t.zip"
    with zipfile.ZipFile(traversal, "w") as z:
        z.writestr("../../evil", "x")
    with pytest.raises(ArchiveError, match="path traversal"):
        extract(traversal, tmp_path / "o1", **LIMITS)

    symlink = tmp_path / "s.zip"
    with zipfile.ZipFile(symlink, "w") as z:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777) << 16
        z.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        extract(symlink, tmp_path / "o2", **LIMITS)

    bomb = tmp_path / "b.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros", b"\0" * 1_000_000)
    assert bomb.stat().st_size < 10_000
    with pytest.raises(ArchiveError, match="archive bomb"):
        extract(bomb, tmp_path / "o3", **LIMITS)


def test_an_archive_unpacks_to_a_hundred_times_its_size_at_most_whatever_the_cap(tmp_path):
    """With the default cap (2 GiB), a 40 KB zip used to unpack 40 MiB of zeros (and a 204 KB
    one 200 MiB) before anything stopped it: the bytes an upload may make the server write
    follow the upload's own size."""
    generous = dict(max_bytes=2 * 2**30, max_files=20)
    bomb = tmp_path / "b.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros", bytes(40 * 2**20))
    with pytest.raises(ArchiveError, match=f"unpacks to more than {RATIO_FLOOR} bytes .* archive bomb"):
        extract(bomb, tmp_path / "o1", **generous)
    assert not (tmp_path / "o1").exists()

    weights = tmp_path / "w.zip"  # incompressible, as weights are, and past the floor: kept whole
    with zipfile.ZipFile(weights, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("weights.bin", os.urandom(RATIO_FLOOR + 2**20))
        z.writestr("zeros", bytes(2**20))
    root = extract(weights, tmp_path / "o2", **generous)
    assert (root / "weights.bin").stat().st_size == RATIO_FLOOR + 2**20


def test_too_many_files_and_garbage_are_refused(tmp_path):
    many = _tar(tmp_path / "m.tar.gz", [_file(f"f{i}") for i in range(25)])
    with pytest.raises(ArchiveError, match="more than 20 files"):
        extract(many, tmp_path / "o1", **LIMITS)
    garbage = tmp_path / "g.zip"
    garbage.write_bytes(b"not an archive at all")
    with pytest.raises(ArchiveError, match="not a .zip, .tar or .tar.gz"):
        extract(garbage, tmp_path / "o2", **LIMITS)


def test_tree_hash_ignores_the_archive_format(tmp_path):
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "metadata.json").write_text("{}")
    (folder / "run.sh").write_text("#!/bin/sh\n")
    (folder / "run.sh").chmod(0o755)
    from_tar = extract(pack(folder, tmp_path / "c.tar.gz"), tmp_path / "t", **LIMITS)
    zipped = tmp_path / "c.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        for path in folder.iterdir():
            info = zipfile.ZipInfo(f"code/{path.name}")
            info.external_attr = (path.stat().st_mode & 0o777) << 16
            z.writestr(info, path.read_bytes())
    from_zip = extract(zipped, tmp_path / "z", **LIMITS)
    assert tree_sha256(from_tar) == tree_sha256(from_zip) == tree_sha256(folder)


def test_a_link_cannot_redirect_a_later_member(tmp_path):
    # "a" -> "." is inside the tree, but writing "a/s" would land beside it and "s" -> "../x"
    # would then point outside; the rule is simple: nothing is written through a link.
    through = _tar(tmp_path / "t.tar.gz", [_link("a", "."), _link("a/s", "../x"), _file("s/evil")])
    with pytest.raises(ArchiveError, match="goes through the link a"):
        extract(through, tmp_path / "o1", **LIMITS)
    over = _tar(tmp_path / "o.tar.gz", [_link("l", "f"), _file("l", b"overwrite")])
    with pytest.raises(ArchiveError, match="appears twice"):
        extract(over, tmp_path / "o2", **LIMITS)
    assert not (tmp_path / "x").exists()


def test_in_tree_links_and_hard_links_are_kept(tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", [_file("sub/model.bin", b"w"), _link("sub/alias", "model.bin"),
                                             _link("sub/copy", "sub/model.bin", tarfile.LNKTYPE)])
    root = extract(archive, tmp_path / "out", **LIMITS)
    assert (root / "alias").read_bytes() == b"w" and (root / "copy").read_bytes() == b"w"
