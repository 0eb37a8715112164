"""Listening TCP sockets of a process tree, read from /proc (Linux; no psutil needed).

`listeners(pid)` walks the tree under `pid` (children by /proc/<pid>/stat's parent field), maps each
process's socket inodes (/proc/<pid>/fd links "socket:[inode]") to /proc/net/tcp{,6} rows in LISTEN state,
and returns who listens where. Used to check that a default `tokdyn serve` listens on loopback only.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

LISTEN = "0A"  # TCP state code in /proc/net/tcp


@dataclass(frozen=True)
class Listener:
    pid: int
    name: str  # /proc/<pid>/comm
    ip: str
    port: int

    @property
    def loopback(self) -> bool:
        address = ipaddress.ip_address(self.ip)
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too
        return (mapped or address).is_loopback


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive now."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _listening() -> dict[int, tuple[str, int]]:
    """inode -> (ip, port) of every listening TCP socket on this machine (IPv4 and IPv6)."""
    out = {}
    for path, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            with open(path) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != LISTEN:
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints each 32-bit word in host (little-endian) order
            words = b"".join(struct.pack("<I", int.from_bytes(raw[i:i + 4], "big")) for i in range(0, len(raw), 4))
            out[int(fields[9])] = (socket.inet_ntop(family, words), int(hex_port, 16))
    return out


def listeners(root: int) -> list[Listener]:
    """Every TCP socket a process of the tree under `root` listens on."""
    table = _listening()
    found = []
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/comm") as fh:
                name = fh.read().strip()
        except OSError:
            continue
        for inode in _socket_inodes(pid):
            if inode in table:
                found.append(Listener(pid, name, *table[inode]))
    return found
