"""The testbed's pod network: one bridge on the host and one network namespace per launched pod.

Pod IPs (allocated by kwok from POD_CIDR) become real addresses inside namespaces the testbed creates, so a
process can listen on a pod's IP, EndpointSlices hold valid (non-loopback) addresses, and Traefik and
Prometheus on the host reach pods through the bridge. Namespaces get a route for the testbed's /16 only,
never a default route, and the bridge has no uplink: no packet leaves the machine.
"""

from __future__ import annotations

import hashlib
import subprocess

BRIDGE = "dstb0"
HOST_IP = "10.244.0.1"
PREFIX_LEN = 16
POD_CIDR = "10.244.128.0/17"  # kwok allocates pod IPs here; the host side keeps 10.244.0.0/17
NETNS_PREFIX = "dstb-"
VETH_PREFIX = "dsv"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, text=True, capture_output=True)


def ensure_bridge() -> None:
    if _ip("link", "show", BRIDGE, check=False).returncode != 0:
        _ip("link", "add", BRIDGE, "type", "bridge")
    addrs = _ip("-o", "addr", "show", "dev", BRIDGE).stdout
    if f"{HOST_IP}/{PREFIX_LEN}" not in addrs:
        _ip("addr", "add", f"{HOST_IP}/{PREFIX_LEN}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def names_for(pod_uid: str) -> tuple[str, str]:
    short = hashlib.sha1(pod_uid.encode()).hexdigest()[:10]
    return NETNS_PREFIX + short, VETH_PREFIX + short  # veth names must stay within 15 characters


def create_pod_netns(pod_uid: str, pod_ip: str) -> str:
    """Creates (or recreates) the namespace holding pod_ip and returns its name."""
    netns, veth = names_for(pod_uid)
    delete_pod_netns(pod_uid)
    _ip("netns", "add", netns)
    _ip("link", "add", veth, "type", "veth", "peer", "name", veth + "p")
    _ip("link", "set", veth + "p", "netns", netns)
    _ip("link", "set", veth, "master", BRIDGE)
    _ip("link", "set", veth, "up")
    inside = ["netns", "exec", netns, "ip"]
    _ip(*inside, "link", "set", "lo", "up")
    _ip(*inside, "link", "set", veth + "p", "name", "eth0")
    _ip(*inside, "addr", "add", f"{pod_ip}/{PREFIX_LEN}", "dev", "eth0")
    _ip(*inside, "link", "set", "eth0", "up")
    return netns


def delete_pod_netns(pod_uid: str) -> None:
    netns, veth = names_for(pod_uid)
    _ip("link", "del", veth, check=False)
    _ip("netns", "del", netns, check=False)


def remove_all() -> None:
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(NETNS_PREFIX):
            _ip("netns", "del", name, check=False)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(VETH_PREFIX):
            _ip("link", "del", name, check=False)
    _ip("link", "del", BRIDGE, check=False)
