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
          server.restart()                 # same port, waits until it listens again
          server.freeze(); server.resume() # SIGSTOP / SIGCONT: clients see a stall, then time out

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

SYSTEM_PYTHON = "/usr/bin/python3"
HOST = "127.0.0.1"
MOUNT = "/stream"
START_TIMEOUT_S = 10.0  # the server listens about 0.4 s after start; generous for a loaded machine
STOP_TIMEOUT_S = 3.0
POLL_S = 0.02
READY_LINE = "serving rtsp://"


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


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


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
        """Start the server and wait (polling, with a deadline) until its port accepts connections.

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
            while time.monotonic() < deadline and self._proc.poll() is None:
                # Our child says it attached, and the port answers (another process there does not count).
                if READY_LINE in self._output() and _listening(self.port):
                    return
                time.sleep(POLL_S)
            if self._proc.poll() is None:  # still running but never listened
                self.kill()
                raise RtspServerError(f"{self.url}: not listening after {timeout_s:.1f} s: {self._output()}")
            if time.monotonic() >= deadline:
                raise RtspServerError(f"{self.url}: server exited with code {self._proc.returncode}: "
                                      f"{self._output()}")
            time.sleep(0.1)  # exited early: usually the port is still in use; try again until the deadline

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
        """Stop (if running) and start again on the same port; returns once it listens."""
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
        return 2
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
