"""The lab's generated media: exact sizes and valid container structure (no root needed)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from PIL import Image

from probe.lab import media


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    media.generate(folder)
    return folder


def boxes(data: bytes) -> list[tuple[bytes, int]]:
    """Top-level ISO-BMFF boxes; fails if sizes do not tile the file exactly."""
    out, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        assert size >= 8, (kind, size)
        out.append((kind, size))
        offset += size
    assert offset == len(data)
    return out


def test_sizes_are_exact_and_generation_is_deterministic(folder: Path, tmp_path: Path) -> None:
    sizes = media.generate(tmp_path)
    assert sizes[media.PHOTO] == media.PHOTO_BYTES
    assert sizes[media.MP4] == media.MP4_BYTES
    for rel, size in sizes.items():
        assert (folder / rel).stat().st_size == size
        assert (folder / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


@pytest.mark.parametrize(("rel", "size"), [(media.PHOTO, (800, 600)), (media.THUMB, (320, 240))])
def test_jpegs_decode(folder: Path, rel: str, size: tuple[int, int]) -> None:
    with Image.open(folder / rel) as image:
        image.load()
        assert (image.format, image.size) == ("JPEG", size)


def test_mp4_and_fmp4_boxes_tile_the_files(folder: Path) -> None:
    assert [k for k, _ in boxes((folder / media.MP4).read_bytes())] == [b"ftyp", b"moov", b"mdat"]
    assert [k for k, _ in boxes((folder / media.HLS_INIT).read_bytes())] == [b"ftyp", b"moov"]
    for i in range(media.SEGMENTS):
        data = (folder / media.segment_path(i)).read_bytes()
        kinds = boxes(data)
        assert [k for k, _ in kinds] == [b"styp", b"moof", b"mdat"]
        moof_at = kinds[0][1]
        # trun's data offset (relative to moof) points at the mdat payload
        trun = data.index(b"trun", moof_at)
        offset = struct.unpack_from(">i", data, trun + 12)[0]
        assert data[moof_at + offset - 4 : moof_at + offset] == b"mdat"


def test_playlists_reference_existing_files(folder: Path) -> None:
    master = (folder / media.HLS_MASTER).read_text().splitlines()
    variant = next(line for line in master if line and not line.startswith("#"))
    playlist = folder / "video/hls" / variant
    lines = playlist.read_text().splitlines()
    assert lines[0] == "#EXTM3U" and lines[-1] == "#EXT-X-ENDLIST"
    uris = [line for line in lines if line and not line.startswith("#")]
    assert len(uris) == media.SEGMENTS
    assert '#EXT-X-MAP:URI="init.mp4"' in lines
    for uri in [*uris, "init.mp4"]:
        assert (playlist.parent / uri).exists()
