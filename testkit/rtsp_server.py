"""A real RTSP camera on loopback, for tests and demos: Debian's gst-rtsp-server behind a small class.

Two halves in one file:

- run as a script by Debian's own Python (``/usr/bin/python3``, which has ``gi`` + ``GstRtspServer``; a
  virtual environment usually does not), it serves H.264 over RTSP on 127.0.0.1 only::

      /usr/bin/python3 testkit/rtsp_server.py --port 8554                  # moving test pattern, 640x480 30 fps
      /usr/bin/python3 testkit/rtsp_server.py --port 8554 --file vtest.avi # a file, paced as live, then EOS

- ``RtspServer``, used from the project's Python, starts that script as a child process and controls it::

      with RtspServer(width=640, height=480, fps=30) as server:   # or RtspServer(source_file="clip.mp4")
          open_source(server.url)          # rtsp://127.0.0.1:<port>/stream
          server.kill()                    # SIGKILL: clients see end of stream
          server.restart()                 # same port, waits until it is ready again
          server.freeze(); server.resume() # SIGSTOP / SIGCONT: clients see a stall, then time out

Ready means a real client can open the stream at once: the server builds and prerolls its media before it
says so (``_hold_media``), and ``RtspServer`` returns only once an RTSP DESCRIBE is answered 200 with a
video SDP (``describe``).

This module imports only the standard library at the top, so both interpreters can load it. It only ever
signals the process it started (by pid).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from urllib.parse import urlsplit

SYSTEM_PYTHON = "/usr/bin/python3"
HOST = "127.0.0.1"
MOUNT = "/stream"
START_TIMEOUT_S = 30.0  # ready (listening, media prerolled) about 0.2 s after start; generous for a loaded machine
STOP_TIMEOUT_S = 3.0
POLL_S = 0.02
READY_LINE = "serving rtsp://"
EXIT_PORT_IN_USE = 2  # the server's exit code when it cannot listen: start() tries again until its deadline
EXIT_NO_MEDIA = 3  # the media cannot be built or prerolled (bad file, missing plugin): no point retrying


class RtspServerError(RuntimeError):
    """The RTSP server could not start (packages missing, port taken, bad file)."""


@functools.lru_cache(maxsize=None)
def rtsp_server_available(python: str = SYSTEM_PYTHON) -> tuple[bool, str]:
    """(True, "") if ``python`` can import gi + GstRtspServer; else (False, why) for a clean pytest skip."""
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, timeout=30, env=_clean_env())
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"{python} cannot run: {exc}"
    if done.returncode != 0:
        return False, (f"{python} lacks gi/GstRtspServer (apt-get install gir1.2-gst-rtsp-server-1.0 python3-gi "
                       f"gstreamer1.0-plugins-ugly ...): {done.stderr.decode(errors='replace').strip()[-200:]}")
    return True, ""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _clean_env() -> dict[str, str]:
    # The child is a different interpreter: keep the venv's Python settings out of it.
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def describe(url: str, timeout_s: float) -> tuple[int, str]:
    """Send one RTSP DESCRIBE for ``url`` (``rtsp://host:port/path``) on a fresh connection, as a client's
    first request does; return (status code, SDP body). Raises OSError when the server does not answer
    within ``timeout_s``, ValueError when the reply is not RTSP."""
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout_s
    with socket.create_connection((parts.hostname, parts.port or 554), timeout=timeout_s) as conn:
        conn.sendall(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < _content_length(reply):
            conn.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    first_line = head.split(b"\r\n", 1)[0]
    status = first_line.split()
    if len(status) < 2 or not status[0].startswith(b"RTSP/") or not status[1].isdigit():
        raise ValueError(f"DESCRIBE {url}: expected an RTSP status line, got {first_line[:80]!r}")
    return int(status[1]), body.decode(errors="replace")


def _content_length(reply: bytes) -> int:
    for line in reply.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return 0


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class RtspServer:
    """A gst-rtsp-server child process on 127.0.0.1 serving ``source_file`` or a moving test pattern.

    port: None picks a free one. ``url`` is ``rtsp://127.0.0.1:<port>/stream``. The server starts in the
    constructor (or ``start()`` after ``stop()``) and is stopped by ``stop()`` / the context manager / the
    garbage collector / interpreter exit.
    """

    def __init__(self, source_file: str | Path | None = None, port: int | None = None, width: int = 640,
                 height: int = 480, fps: int = 30, python: str = SYSTEM_PYTHON,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        if source_file is not None and not Path(source_file).is_file():
            raise FileNotFoundError(f"source_file: no such file {source_file}")
        self.source_file = None if source_file is None else str(Path(source_file).resolve())
        self.port = port or free_port()
        self.width, self.height, self.fps = width, height, fps
        self.python = python
        self.url = f"rtsp://{HOST}:{self.port}{MOUNT}"
        self._proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()
        self._finalizer = None
        self.start(start_timeout_s)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _command(self) -> list[str]:
        cmd = [self.python, str(Path(__file__).resolve()), "--port", str(self.port), "--width", str(self.width),
               "--height", str(self.height), "--fps", str(self.fps), "--parent", str(os.getpid())]
        return cmd + (["--file", self.source_file] if self.source_file else [])

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the server and wait (polling, with a deadline) until a client can open the stream: our
        child says its media is prerolled and listens, and a DESCRIBE is answered 200 with a video SDP.

        Retries while the port is still held by a previous instance. Raises RtspServerError on failure.
        """
        if self._proc is not None and self._proc.poll() is None:
            raise RtspServerError(f"{self.url}: already running (pid {self._proc.pid})")
        deadline = time.monotonic() + timeout_s
        while True:
            self._log.seek(0)
            self._log.truncate()
            self._proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=self._log,
                                          stderr=subprocess.STDOUT, env=_clean_env(), start_new_session=True)
            # Make sure the child dies with us even if nobody calls stop().
            self._finalizer = weakref.finalize(self, _kill_quietly, self._proc.pid)
            got = "no ready line from the server"
            while time.monotonic() < deadline and self._proc.poll() is None:
                # Only our child's line counts (another process may answer on the port before it binds).
                if READY_LINE in self._output():
                    got = self._probe(deadline)
                    if got is None:
                        return
                time.sleep(POLL_S)
            if self._proc.poll() is None:  # still running but never ready
                self.kill()
                raise RtspServerError(f"{self.url}: not listening with its stream ready after {timeout_s:.1f} s: "
                                      f"expected a DESCRIBE answered 200 with a video SDP, got {got}; "
                                      f"server output: {self._output()}")
            if self._proc.returncode != EXIT_PORT_IN_USE or time.monotonic() >= deadline:
                raise RtspServerError(f"{self.url}: server exited with code {self._proc.returncode}: "
                                      f"{self._output()}")
            time.sleep(0.1)  # the port is still held by a previous instance: try again until the deadline

    def _probe(self, deadline: float) -> str | None:
        """None when a DESCRIBE is answered 200 with a video SDP, else what came back instead."""
        try:
            status, sdp = describe(self.url, max(deadline - time.monotonic(), POLL_S))
        except (OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if status == 200 and "m=video" in sdp else f"status {status} with SDP {sdp[:200]!r}"

    def _output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()[-600:] or "(no output)"

    def _signal(self, sig: int) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise RtspServerError(f"{self.url}: not running")
        os.kill(self._proc.pid, sig)

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open but nothing flows (clients must time out)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a frozen server."""
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server (a crash: no RTSP teardown) and reap it. No-op when not running."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def stop(self) -> None:
        """Terminate politely (SIGTERM, a frozen server is resumed first), SIGKILL after STOP_TIMEOUT_S."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGCONT)
        self._proc.terminate()
        try:
            self._proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Stop (if running) and start again on the same port; returns once it is ready (see ``start``)."""
        self.stop()
        self.start(timeout_s)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "RtspServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()


# ---- the server itself: runs under /usr/bin/python3 with gi ------------------------------------------------

def _launch_line(args: argparse.Namespace) -> str:
    caps = f"video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1"
    # Zero-latency H.264 with a keyframe every second: a (re)connecting client gets a picture within 1 s.
    encode = (f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} ! "
              "rtph264pay name=pay0 pt=96 config-interval=1")
    if args.file:
        location = args.file.replace("\\", "\\\\").replace('"', '\\"')
        source = f'filesrc location="{location}" ! decodebin ! videoconvert ! videoscale ! videorate'
    else:
        source = "videotestsrc is-live=true pattern=ball ! videoconvert"
    return f"( {source} ! {caps} ! {encode} )"


def _hold_media(server, factory, port: int) -> bool:
    """Build and preroll the mount's shared media now, and keep it prepared for the server's life, like a
    camera that encodes whether anyone watches. False when it cannot be prerolled.

    Why: left alone, gst-rtsp-server builds the pipeline inside the first client's DESCRIBE (plugin loading,
    typefinding the file, starting the encoder: about 0.1 s of CPU here, seconds on a starved machine), and
    FFmpeg reports a DESCRIBE answered after its read timeout as "Invalid data": the first open failed. It
    also tears the media down, asynchronously, whenever its last client leaves, and answers 503 to a client
    that arrives meanwhile (the client right after the readiness probe's DESCRIBE, for one). Our own
    prepare keeps the count of users above zero, so neither happens. A file still ends: a client that
    comes back after the end gets it from the start. The cost: once a client has played, the pipeline
    keeps encoding while nobody watches (measured: 2% of a core at 320x240 15 fps, 10% at 640x480 30 fps).
    """
    from gi.repository import GstRtsp, GstRtspServer

    _, url = GstRtsp.RTSPUrl.parse(f"rtsp://{HOST}:{port}{MOUNT}")
    media = factory.construct(url)  # shared: the factory caches it, and every client gets this same media
    # A media thread of its own: with none, the bus would be served by the main loop, not running yet.
    thread = server.get_thread_pool().get_thread(GstRtspServer.RTSPThreadType.MEDIA, GstRtspServer.RTSPContext())
    return media is not None and thread is not None and media.prepare(thread)


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Serve H.264 over RTSP on 127.0.0.1 (gst-rtsp-server).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--file", help="video file to serve (paced as live); default: a moving test pattern")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--parent", type=int, help="exit when this process is gone (no orphaned servers)")
    args = parser.parse_args(argv)

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(_launch_line(args))
    factory.set_shared(True)  # one pipeline for every client, like a camera
    server.get_mount_points().add_factory(MOUNT, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {HOST}:{args.port} (port in use?)", flush=True)
        return EXIT_PORT_IN_USE
    if not _hold_media(server, factory, args.port):
        print(f"cannot build or preroll the media: {_launch_line(args)}", flush=True)
        return EXIT_NO_MEDIA
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    if args.parent:
        def parent_alive() -> bool:
            if os.getppid() != args.parent:  # reparented: whoever started us died without stopping us
                loop.quit()
                return False
            return True

        GLib.timeout_add_seconds(1, parent_alive)
    print(f"{READY_LINE}{HOST}:{args.port}{MOUNT}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
