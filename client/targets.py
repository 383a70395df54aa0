"""Where a client connects: one address, several replicas, or a DNS name with several
records, and how streams are spread over them.

Several replicas go into one channel with gRPC's own ``round_robin`` policy, so each
new stream goes to the next replica that is up (gRPC keeps a subchannel per address,
reconnects the ones that fail and skips them meanwhile). A list of ``host:port`` is
resolved here into gRPC's ``ipv4:a:p,b:q`` (or ``ipv6:``) form; a ``dns:///name:port``
target is resolved by gRPC, which re-resolves it when a replica goes away. A single
``host:port`` keeps gRPC's default ``pick_first`` (a name like ``localhost`` with an
IPv4 and an IPv6 address must not alternate between them).

With TLS, a list given by one host name (``["seamcut.example:50051", ...]`` with
different ports, or the same name twice) keeps that name for the certificate check;
a list of IP addresses or of different names needs ``tls_server_name``.

Imports grpc, the stdlib and the SDK's ``errors``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from seamcut.client.errors import InvalidOptions, rpc_error

DEFAULT_PORT = 50051
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


@dataclass(frozen=True, slots=True)
class ChannelTarget:
    """A grpc target string, the channel options it needs, and how many replicas it
    names (0: unknown, a DNS name gRPC resolves)."""

    target: str
    options: tuple[tuple[str, str], ...]
    replicas: int
    display: str  # what error messages name
    # The one host name a list of replicas was given by, for TLS: gRPC checks the
    # certificates against the resolved IP addresses otherwise. None: IPs, or names
    # that differ (then the caller must say which name the certificates carry).
    tls_name: str | None = None


def _host_and_port(address: str) -> tuple[str, str]:
    """``host:port``, ``[v6]:port``, ``[v6]`` or a bare IPv6 address, split; the port
    as written ("" when there is none)."""
    a = address.strip()
    if a.startswith("["):  # [v6] or [v6]:port
        host, _, rest = a[1:].partition("]")
        return host, rest.lstrip(":")
    if a.count(":") >= 2:  # a bare IPv6 address
        return a, ""
    host, _, port = a.partition(":")
    return host, port


def with_default_port(target: str) -> str:
    """``host`` -> ``host:50051``; a target with a port, or with a scheme (``dns:``,
    ``unix:``, ``ipv4:``...), is left as it is; IPv6 addresses come out bracketed.

    grpc itself takes a bare host to mean port 443, which no seamcut server uses.
    """
    t = target.strip()
    if re.match(r"^[a-z][a-z0-9+.-]*:(?!\d+$)", t):  # a scheme, not "host:port"
        return t
    host, port = _host_and_port(t)
    return f"{f'[{host}]' if ':' in host else host}:{port or DEFAULT_PORT}"


def _split_host_port(address: str) -> tuple[str, int]:
    host, port = _host_and_port(address)
    if not host:
        raise InvalidOptions(f"target {address!r}: no host")
    try:
        return host, int(port) if port else DEFAULT_PORT
    except ValueError:
        raise InvalidOptions(f"target {address!r}: the port must be a number") from None


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:  # as gRPC would say it for a single address
        raise rpc_error(grpc.StatusCode.UNAVAILABLE,
                        f"DNS resolution failed for {host}:{port}: {exc.strerror}",
                        answered=False) from exc
    seen: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0])
        seen.setdefault(str(ip), ip)
    return list(seen.values())


def channel_target(target: str | Sequence[str], *, round_robin: bool | None = None
                   ) -> ChannelTarget:
    """The channel target for one address or a list of replicas.

    ``round_robin``: spread streams over every address (default: yes for a list or a
    ``dns:`` name, no for a single ``host:port``).
    """
    if isinstance(target, str):
        rr = target.startswith("dns:") if round_robin is None else round_robin
        return ChannelTarget(target=target, options=(("grpc.service_config", ROUND_ROBIN),)
                             if rr else (), replicas=0 if target.startswith("dns:") else 1,
                             display=target)
    addresses = list(target)
    if not addresses:
        raise InvalidOptions("target: give at least one address")
    if len(addresses) == 1 and not round_robin:
        return channel_target(addresses[0], round_robin=round_robin)
    v4: list[str] = []
    v6: list[str] = []
    names: set[str] = set()
    for address in addresses:
        host, port = _split_host_port(address)
        if not _is_ip(host):
            names.add(host)
        ips = _resolve(host, port)
        # One address per replica: a name's IPv4 address when it has one.
        ip = next((i for i in ips if i.version == 4), ips[0])
        (v4 if ip.version == 4 else v6).append(
            f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}")
    if v4 and v6:
        raise InvalidOptions("target: the replicas mix IPv4 and IPv6 addresses; give one "
                             "family, or a dns:/// name that resolves to all of them")
    scheme, hosts = ("ipv4", v4) if v4 else ("ipv6", v6)
    return ChannelTarget(target=f"{scheme}:{','.join(hosts)}",
                         options=(("grpc.service_config", ROUND_ROBIN),),
                         replicas=len(hosts), display=", ".join(addresses),
                         tls_name=names.pop() if len(names) == 1 else None)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
