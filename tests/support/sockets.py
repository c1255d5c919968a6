"""Which TCP addresses processes listen on: the loopback-only checks of what this project starts."""

from __future__ import annotations

import ipaddress

import psutil


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (a JVM and its Python workers, a server and its workers)."""
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def listeners(procs: list[psutil.Process]) -> list[tuple[int, str, str, int]]:
    """(pid, process name, ip, port) of every listening TCP socket of `procs`."""
    found = []
    for proc in procs:
        try:
            conns, name = proc.net_connections(kind="inet"), proc.name()
        except psutil.NoSuchProcess:   # a worker that exited meanwhile listens on nothing
            continue
        found += [(proc.pid, name, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return found


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped loopback (::ffff:127.0.0.1, as a JVM reports it)."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def beyond_loopback(procs: list[psutil.Process]) -> list[tuple[int, str, str, int]]:
    """The listeners of `procs` reachable from other hosts (0.0.0.0, ::, a LAN address)."""
    return [entry for entry in listeners(procs) if not is_loopback(entry[2])]
