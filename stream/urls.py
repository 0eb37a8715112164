"""What a stream URL means, decided once: which schemes exist, which are live, and where sample:// clips live.

Every part of tokdyn (the pipeline config, the sources, probe, the demo) asks these functions instead of
looking at URL prefixes itself. Credentials are handled by stream.config.redact_url.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

NETWORK_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"})
# Live by nature: end of data means the connection dropped. HTTP(S) is live only for playlists (HLS) or
# when the server declares no duration; a plain file over HTTP is read like a local file.
LIVE_SCHEMES = NETWORK_SCHEMES - {"http", "https"}
SYNTHETIC_SCHEME, SAMPLE_SCHEME = "synthetic", "sample"
SCENE_SCHEME = "scene"  # scenes with known truth, generated in-process like synthetic:// (scenes/ registers it)
GENERATED_SCHEMES = frozenset({SYNTHETIC_SCHEME, SCENE_SCHEME})
# What a stream URL may start with ("" is a plain file path).
URL_SCHEMES = frozenset({"", "file", SAMPLE_SCHEME}) | GENERATED_SCHEMES | NETWORK_SCHEMES


# The frame generator behind each generated scheme (fps, width, height, num_frames, frame(index)), registered by
# the package that owns it: stream.sources registers synthetic://, scenes.video registers scene://. stream/
# imports no owner: whoever opens a scene:// URL imports scenes.video first (the source worker, the CLI do).
_GENERATORS: dict[str, Callable[[str], object]] = {}


def register_generator(scheme: str, factory: Callable[[str], object]) -> None:
    """Make ``open_source`` play ``scheme://...`` URLs as the video ``factory(url)`` returns."""
    if scheme not in GENERATED_SCHEMES:
        raise ValueError(f"generated scheme: expected one of {sorted(GENERATED_SCHEMES)}, got {scheme!r}")
    _GENERATORS[scheme] = factory


def generated_video(url: str) -> object:
    """The frame generator behind a generated-scheme URL, from the factory its owner registered.
    Raises ValueError when no owner has registered the scheme (its package was never imported)."""
    scheme = urlsplit(url).scheme.lower()
    factory = _GENERATORS.get(scheme)
    if factory is None:
        raise ValueError(f"{scheme}:// URLs: no generator registered (import the package that provides it, "
                         f"e.g. scenes.video for scene://)")
    return factory(url)


def is_live_url(url: str) -> bool:
    """Whether ``url`` is live by nature, the one rule every part of tokdyn uses: a network stream that
    only goes forward (rtsp, rtmp, srt, udp, ... and HLS ``.m3u8`` playlists) or a generated camera.
    Files, ``file://``, plain ``http(s)://`` files and ``sample://`` clips are not."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in GENERATED_SCHEMES:
        return True
    return scheme in LIVE_SCHEMES or (scheme in NETWORK_SCHEMES and parts.path.endswith(".m3u8"))


def resolve_url(url: str) -> str:
    """``sample://NAME`` -> the cached local path of that sample clip (fetched once, stream.samples); other
    URLs unchanged. Raises SampleUnavailable when the clip cannot be fetched."""
    parts = urlsplit(url)
    if parts.scheme == SAMPLE_SCHEME:
        from stream.samples import sample_path  # fetching tools are needed only for sample:// URLs

        return str(sample_path(parts.netloc + parts.path))
    return url


def query_params(url: str, scheme: str, casts: Mapping[str, Callable[[str], object]]) -> dict[str, object]:
    """The typed parameters of a generated camera's URL (``scheme://?key=value&...``), each cast by ``casts``.

    Raises:
        ValueError: another scheme, an unknown key, or a value its cast refuses (the message names it).
    """
    parts = urlsplit(url)
    if parts.scheme != scheme:
        raise ValueError(f"expected a {scheme}:// URL, got {url!r}")
    params: dict[str, object] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in casts:
            raise ValueError(f"{scheme} URL: unknown key {key!r}, expected one of {sorted(casts)}")
        try:
            params[key] = casts[key](value)
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(casts[key], "valid")
            raise ValueError(f"{scheme} URL: {key}={value!r} is not {kind}") from None
    return params
