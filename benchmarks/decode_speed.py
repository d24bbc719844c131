"""How fast the prepare stage decodes a folder of JPEG photos, against a plain one-process PIL loop.

Run as: python -m benchmarks.decode_speed [--images 10000] [--size 96] [--folder DIR]

Both decode the same files to the same square size: the plain loop opens each file, converts it to
RGB, resizes its shorter side to the size and crops the centre, as a notebook would; the project's
path is transfer.datasets.image_folder.decode_all (JPEG draft mode, crop before resize, a process per core).
The last line is one JSON object of the measured numbers. Peak memory is sampled from /proc every
10 ms over the parent and its worker processes (their summed resident set), so it includes
Python, numpy and PIL themselves; the overhead beyond the prepared array is the number to judge.
"""

import argparse
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from transfer.datasets.image_folder import decode_all, default_workers

PHOTO_SIZE = (500, 375)  # px, width x height: a typical web photo, as the issue sets it
CLASSES = 10
JPEG_QUALITY = 90
SAMPLE_SECONDS = 0.01


def write_photo(arguments: tuple[Path, int]) -> None:
    """One photo-like JPEG: smooth colour gradients, a few shapes and mild noise (30-60 KB, like a photo's)."""
    path, seed = arguments
    rng = np.random.default_rng(seed)
    width, height = PHOTO_SIZE
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 215, 3)
    slope = rng.uniform(-0.3, 0.3, (2, 3))
    pixels = base + rows[..., None] * slope[0] + cols[..., None] * slope[1]
    for _ in range(4):  # soft discs: edges for the encoder, as objects give a photo
        centre, radius = rng.uniform((0, 0), (height, width)), rng.uniform(20, 120)
        inside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < radius**2
        pixels[inside] += rng.uniform(-60, 60, 3)
    pixels += rng.normal(0, 6, pixels.shape)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=JPEG_QUALITY)


def photo_files(folder: Path, count: int) -> list[Path]:
    """count photos under folder/train/<class>/, written in parallel unless they are there already."""
    files = [folder / "train" / f"class_{index % CLASSES}" / f"{index:06d}.jpg" for index in range(count)]
    missing = [(path, index) for index, path in enumerate(files) if not path.is_file()]
    for path in {path.parent for path, _ in missing}:
        path.mkdir(parents=True, exist_ok=True)
    if missing:
        with ProcessPoolExecutor(default_workers()) as pool:
            list(pool.map(write_photo, missing, chunksize=64))
    return files


def plain_pil(files: list[Path], size: int) -> np.ndarray:
    """The baseline: open, convert, resize the shorter side to size, crop the centre; one process."""
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for index, path in enumerate(files):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            scale = size / min(rgb.size)
            width, height = max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))
            resized = rgb.resize((width, height), Image.Resampling.BILINEAR)
            left, top = (width - size) // 2, (height - size) // 2
            images[index] = np.asarray(resized.crop((left, top, left + size, top + size)))
    return images


class PeakMemory:
    """Samples the summed resident memory of this process and its children until stopped."""

    def __init__(self):
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exception) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak_bytes = max(self.peak_bytes, sum(resident_bytes(pid) for pid in process_tree(os.getpid())))


def process_tree(pid: int) -> list[int]:
    """pid and every descendant (from /proc/<pid>/task/*/children)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending += [int(child) for child in (task / "children").read_text().split()]
            except OSError:  # the task ended while we looked
                pass
    return found


def resident_bytes(pid: int) -> int:
    """VmRSS of a process, 0 if it has ended."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def timed(function, *arguments) -> tuple[object, float]:
    start = time.perf_counter()
    result = function(*arguments)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Write or reuse the photos, time both decoders, print the report and the JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="photos of 500x375 px (default 10000)")
    parser.add_argument("--size", type=int, default=96, help="side of the stored square in px (default 96)")
    parser.add_argument("--folder", type=Path, help="where the photos are written or reused (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.images < 1 or args.size < 1:
        parser.error("--images and --size must be at least 1")
    with tempfile.TemporaryDirectory() as temp:
        files = photo_files(args.folder or Path(temp), args.images)
        workers = default_workers()
        plain, plain_seconds = timed(plain_pil, files, args.size)
        baseline_bytes = sum(resident_bytes(pid) for pid in process_tree(os.getpid()))
        with PeakMemory() as memory:
            project, project_seconds = timed(decode_all, tuple(files), args.size, workers, "decoding")
    arrays_bytes = project.nbytes
    difference = float(np.abs(project.astype(np.int16) - plain.astype(np.int16)).mean())
    result = {
        "images": args.images,
        "size": args.size,
        "workers": workers,
        "plain_seconds": round(plain_seconds, 3),
        "project_seconds": round(project_seconds, 3),
        "speedup_vs_plain_pil": round(plain_seconds / project_seconds, 2),
        "peak_bytes": memory.peak_bytes,
        "baseline_bytes": baseline_bytes,  # this process before the decode, the plain result included
        "arrays_bytes": arrays_bytes,
        "peak_beyond_arrays_bytes": memory.peak_bytes - baseline_bytes - arrays_bytes,
        "mean_abs_pixel_difference": round(difference, 3),
    }
    print(
        f"decode {args.images} JPEGs of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} to {args.size}x{args.size}: plain PIL loop "
        f"{plain_seconds:.1f} s, project ({workers} workers, draft mode) {project_seconds:.1f} s = "
        f"{result['speedup_vs_plain_pil']}x; peak {memory.peak_bytes / 2**20:.0f} MiB over the parent and workers, "
        f"{result['peak_beyond_arrays_bytes'] / 2**20:.0f} MiB beyond the process before decoding and the "
        f"{arrays_bytes / 2**20:.0f} MiB array; mean |pixel difference| {difference:.2f} of 255"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
