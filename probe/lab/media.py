"""Realistic objects for the lab's origins, generated at `probe lab up`.

Detectors fetch what a Twitter client fetches: JPEG photos, an HLS video
(master + media playlist + fMP4 init and segments), a progressive MP4 read by
range, a script and pages. Every object has an exact, fixed size so targets can
state `expected_bytes`, and its container headers are valid so media parsers
on the probe side see the real structure (JPEG markers, ISO-BMFF boxes).
Generation is seeded: the same lab always serves the same bytes.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

# Relative path under the media folder -> exact size in bytes (playlists: see below).
PHOTO = "img/photo.jpg"
THUMB = "img/thumb.jpg"
HLS_MASTER = "video/hls/master.m3u8"
HLS_MEDIA = "video/hls/720p/playlist.m3u8"
HLS_INIT = "video/hls/720p/init.mp4"
MP4 = "video/clip.mp4"
SCRIPT = "js/main.js"
PAGE = "page/index.html"

PHOTO_BYTES = 300_000
THUMB_BYTES = 60_000
SEGMENT_BYTES = 250_000
SEGMENTS = 4
SEGMENT_SECONDS = 4.0
MP4_BYTES = 2_000_000
SCRIPT_BYTES = 150_000
PAGE_BYTES = 30_000


def segment_path(i: int) -> str:
    return f"video/hls/720p/seg{i}.m4s"


def generate(folder: Path, seed: int = 2021) -> dict[str, int]:
    """Write every object under `folder` (skipping ones already there); return path -> size."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    objects: dict[str, bytes] = {
        PHOTO: jpeg(rng, 800, 600, PHOTO_BYTES),
        THUMB: jpeg(rng, 320, 240, THUMB_BYTES),
        HLS_INIT: fmp4_init(),
        MP4: progressive_mp4(rng, MP4_BYTES),
        SCRIPT: script(rng, SCRIPT_BYTES),
        PAGE: page(PAGE_BYTES),
    }
    for i in range(SEGMENTS):
        objects[segment_path(i)] = fmp4_segment(rng, i, SEGMENT_BYTES)
    objects[HLS_MEDIA] = media_playlist().encode()
    objects[HLS_MASTER] = master_playlist().encode()
    sizes = {}
    for rel, data in objects.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.stat().st_size != len(data):
            path.write_bytes(data)
        sizes[rel] = len(data)
    return sizes


def jpeg(rng: np.random.Generator, width: int, height: int, size: int) -> bytes:
    """A photo-like JPEG padded with COM segments to exactly `size` bytes."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
    noise = rng.integers(-60, 60, (height, width, 3))
    pixels = np.clip(base + noise, 0, 255).astype("uint8")
    for quality in (90, 80, 70, 60, 50, 40, 30):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
        data = buf.getvalue()
        if len(data) + 4 <= size:
            break
    else:
        raise ValueError(f"cannot fit a {width}x{height} JPEG into {size} bytes")
    pad = size - len(data)
    segments = b""
    while pad > 0:
        # A COM segment is FF FE + 2-byte length (which counts itself) + payload.
        chunk = min(pad, 65535 + 2)
        if pad - chunk in (1, 2, 3):  # never leave a remainder too small for a segment
            chunk -= 4
        body = chunk - 4
        segments += b"\xff\xfe" + struct.pack(">H", body + 2) + b"L" * body
        pad -= chunk
    return data[:2] + segments + data[2:]  # right after SOI


def box(kind: bytes, payload: bytes) -> bytes:
    """One ISO-BMFF box: 32-bit size, four-character type, payload."""
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def _mvhd(duration: int) -> bytes:
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    return full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIIIIH", 0, 0, 1000, duration, 0x10000, 0x100) + b"\0" * 10 + matrix
        + b"\0" * 24 + struct.pack(">I", 2),
    )


def _trak(duration: int) -> bytes:
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    tkhd = full_box(
        b"tkhd", 0, 3,
        struct.pack(">IIIII", 0, 0, 1, 0, duration) + b"\0" * 8 + struct.pack(">HHHH", 0, 0, 0, 0)
        + matrix + struct.pack(">II", 1280 << 16, 720 << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, 90000, 0, 0x55C4, 0))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I", 0) + b"vide" + b"\0" * 12 + b"Lab video\0")
    vmhd = full_box(b"vmhd", 0, 1, b"\0" * 8)
    dref = full_box(b"dref", 0, 0, struct.pack(">I", 1) + full_box(b"url ", 0, 1, b""))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 0))
        + full_box(b"stts", 0, 0, struct.pack(">I", 0))
        + full_box(b"stsc", 0, 0, struct.pack(">I", 0))
        + full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0))
        + full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    minf = box(b"minf", vmhd + box(b"dinf", dref) + stbl)
    return box(b"trak", tkhd + box(b"mdia", mdhd + hdlr + minf))


def fmp4_init() -> bytes:
    """The init segment of a fragmented MP4: ftyp + moov with mvex."""
    ftyp = box(b"ftyp", b"iso6" + struct.pack(">I", 0) + b"iso6dashcmfc")
    trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0))
    return ftyp + box(b"moov", _mvhd(0) + _trak(0) + box(b"mvex", trex))


def fmp4_segment(rng: np.random.Generator, index: int, size: int) -> bytes:
    """One media segment: styp + moof (mfhd, traf) + mdat, exactly `size` bytes."""
    styp = box(b"styp", b"msdh" + struct.pack(">I", 0) + b"msdhmsix")
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", index + 1))
    tfhd = full_box(b"tfhd", 0, 0x020000, struct.pack(">I", 1))
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", int(index * SEGMENT_SECONDS * 90000)))
    head_without_trun = len(styp) + 8 + len(mfhd) + 8 + len(tfhd) + len(tfdt)
    trun_size = 12 + 8 + 4  # full box header + sample_count + data_offset, + one sample size
    mdat_payload = size - head_without_trun - trun_size - 8
    moof_size = 8 + len(mfhd) + 8 + len(tfhd) + len(tfdt) + trun_size
    trun = full_box(b"trun", 0, 0x000201, struct.pack(">IiI", 1, moof_size + 8, mdat_payload))
    moof = box(b"moof", mfhd + box(b"traf", tfhd + tfdt + trun))
    data = styp + moof + box(b"mdat", rng.bytes(mdat_payload))
    assert len(data) == size
    return data


def progressive_mp4(rng: np.random.Generator, size: int) -> bytes:
    """A progressive MP4 (ftyp + moov + mdat) of exactly `size` bytes."""
    duration = 16_000
    head = box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41")
    head += box(b"moov", _mvhd(duration) + _trak(duration))
    return head + box(b"mdat", rng.bytes(size - len(head) - 8))


def media_playlist() -> str:
    lines = [
        "#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{int(SEGMENT_SECONDS)}",
        "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD", '#EXT-X-MAP:URI="init.mp4"',
    ]
    for i in range(SEGMENTS):
        lines += [f"#EXTINF:{SEGMENT_SECONDS:.3f},", f"seg{i}.m4s"]
    return "\n".join(lines + ["#EXT-X-ENDLIST", ""])


def master_playlist() -> str:
    bandwidth = int(SEGMENT_BYTES * 8 / SEGMENT_SECONDS)
    return "\n".join([
        "#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION=1280x720,CODECS="avc1.64001f"',
        "720p/playlist.m3u8", "",
    ])


def script(rng: np.random.Generator, size: int) -> bytes:
    """Minified-looking JavaScript of exactly `size` bytes."""
    out = io.StringIO()
    out.write("/* probe lab script */\n")
    i = 0
    while out.tell() < size:
        ident = "".join(chr(97 + c) for c in rng.integers(0, 26, 6))
        out.write(f"var {ident}{i}=function(e,t){{return e*{i}+t.length}};")
        i += 1
    return out.getvalue().encode()[: size - 1] + b"\n"


def page(size: int) -> bytes:
    """An HTML page of exactly `size` bytes that links the lab's image and script."""
    head = (
        "<!doctype html><html><head><meta charset=utf-8><title>Probe lab</title>"
        '<script src="/media/js/main.js"></script></head><body>'
        '<img src="/media/img/photo.jpg" alt=photo>'
    )
    tail = "</body></html>\n"
    filler = "<p>" + "lorem ipsum dolor sit amet " * 3 + "</p>"
    body = ""
    while len(head) + len(body) + len(filler) + len(tail) <= size:
        body += filler
    body += " " * (size - len(head) - len(body) - len(tail))
    return (head + body + tail).encode()
