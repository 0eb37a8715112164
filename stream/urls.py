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
SCENE_SCHEME = "scene"  # procedural scenes with known truth (scenes/): generated in-process like synthetic://
GENERATED_SCHEMES = frozenset({SYNTHETIC_SCHEME, SCENE_SCHEME})
# What a stream URL may start with ("" is a plain file path).
URL_SCHEMES = frozenset({"", "file", SAMPLE_SCHEME}) | GENERATED_SCHEMES | NETWORK_SCHEMES


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
