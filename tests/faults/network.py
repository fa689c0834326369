"""The fault harness's network: one namespace per member, or loopback.

NamespaceNetwork gives member i its own network namespace joined to a bridge
by a veth pair; member i is 10.<a>.<b>.<i+1>/24 and the harness (the clients,
in the root namespace) is .254 on the bridge. Partitions and packet loss are
iptables rules inside the members' namespaces that name only the members'
addresses, so the harness always reaches every member: a partition cuts
members off from each other, as in a data centre whose clients sit outside.

LoopbackNetwork is the fallback where namespaces cannot be made (not root, no
`ip netns`): every member on 127.0.0.1 with its own ports. It cannot partition
or drop packets and says so; the other faults still run.

Every name and address is derived from a tag so that two runs never share
one, and close() removes everything made, also after a failure.
"""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import cluster as itest  # noqa: E402  (shared helpers of the integration suites)

CLIENT_PORT = 2379
PEER_PORT = 2380          # where the delay proxy listens (the advertised peer URL)
MEMBER_PEER_PORT = 12380  # where the member itself listens, inside its namespace
METRICS_PORT = 2381


# What each run made, so that a later run can remove what a killed one left.
STATE_DIR = "/run/conclave-faults"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def record_made(tag, **made):
    """Adds to <STATE_DIR>/<tag>.json what this run made (with its pid)."""
    os.makedirs(STATE_DIR, exist_ok=True)
    path = os.path.join(STATE_DIR, tag + ".json")
    state = {"pid": os.getpid(), "netns": [], "links": [], "mounts": []}
    if os.path.exists(path):
        with open(path) as f:
            state = json.load(f)
    for k, v in made.items():
        state[k] = state.get(k, []) + [v]
    with open(path, "w") as f:
        json.dump(state, f)


def forget_made(tag):
    try:
        os.remove(os.path.join(STATE_DIR, tag + ".json"))
    except OSError:
        pass


def reap_stale():
    """Removes the namespaces, links and mounts of runs whose process is gone."""
    if not os.path.isdir(STATE_DIR):
        return []
    reaped = []
    for name in os.listdir(STATE_DIR):
        path = os.path.join(STATE_DIR, name)
        try:
            with open(path) as f:
                state = json.load(f)
        except (OSError, ValueError):
            continue
        if _pid_alive(state.get("pid", 0)):
            continue
        for m in state.get("mounts", []):
            _run("umount", "-l", m, check=False)
        for link in state.get("links", []):
            _run("ip", "link", "del", link, check=False)
        for ns in state.get("netns", []):
            _run("ip", "netns", "del", ns, check=False)
        os.remove(path)
        reaped.append(name[:-5])
    return reaped


def _run(*cmd, check=True):
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=20)
    if check and result.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), result.stderr.strip()))
    return result


class Endpoint:
    """Where one member listens and how to run a command next to it."""

    def __init__(self, index, host, client_port, peer_port, member_peer_port, metrics_port,
                 netns=None):
        self.index = index
        self.host = host
        self.client_port = client_port
        self.peer_port = peer_port
        self.member_peer_port = member_peer_port
        self.metrics_port = metrics_port
        self.netns = netns

    @property
    def client_url(self):
        return "http://%s:%d" % (self.host, self.client_port)

    @property
    def client_target(self):
        return "%s:%d" % (self.host, self.client_port)

    @property
    def peer_url(self):
        """The advertised peer URL: the delay proxy in front of the member."""
        return "http://%s:%d" % (self.host, self.peer_port)

    @property
    def member_peer_url(self):
        return "http://127.0.0.1:%d" % self.member_peer_port

    @property
    def metrics_url(self):
        return "http://127.0.0.1:%d" % self.metrics_port

    def wrap(self, cmd):
        """cmd run inside this member's namespace (unchanged on loopback)."""
        if self.netns is None:
            return list(cmd)
        return ["ip", "netns", "exec", self.netns] + list(cmd)


class NamespaceNetwork:
    kind = "namespaces"
    can_partition = True

    def __init__(self, tag, size):
        self.tag = tag
        self.size = size
        # 10.200-249.x.0/24 from the tag: two runs at once use two subnets.
        h = sum(ord(c) * 31 ** i for i, c in enumerate(tag))
        self.prefix = "10.%d.%d" % (200 + h % 50, (h // 50) % 250)
        self.bridge = "cfb%s" % tag[-8:]
        self.harness_ip = self.prefix + ".254"
        self.endpoints = []
        self._made_ns = []
        self._made_bridge = False
        self._rules = []  # (owner, index, rule spec) currently installed

    def ip(self, i):
        return "%s.%d" % (self.prefix, i + 1)

    def setup(self):
        try:
            record_made(self.tag, links=self.bridge)
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            self._made_bridge = True
            _run("ip", "addr", "add", self.harness_ip + "/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            for i in range(self.size):
                ns = "cf%s-n%d" % (self.tag[-8:], i + 1)
                record_made(self.tag, netns=ns, links="cfv%s%d" % (self.tag[-6:], i + 1))
                _run("ip", "netns", "add", ns)
                self._made_ns.append(ns)
                host_end, ns_end = "cfv%s%d" % (self.tag[-6:], i + 1), "eth0"
                _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "cfp%s%d"
                     % (self.tag[-6:], i + 1))
                _run("ip", "link", "set", "cfp%s%d" % (self.tag[-6:], i + 1), "netns", ns, "name",
                     ns_end)
                _run("ip", "link", "set", host_end, "master", self.bridge)
                _run("ip", "link", "set", host_end, "up")
                _run("ip", "netns", "exec", ns, "ip", "addr", "add", self.ip(i) + "/24", "dev",
                     ns_end)
                _run("ip", "netns", "exec", ns, "ip", "link", "set", ns_end, "up")
                _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
                self.endpoints.append(Endpoint(i, self.ip(i), CLIENT_PORT, PEER_PORT,
                                               MEMBER_PEER_PORT, METRICS_PORT, ns))
        except Exception:
            self.close()
            raise

    def close(self):
        for i, ns in enumerate(self._made_ns):
            _run("ip", "link", "del", "cfv%s%d" % (self.tag[-6:], i + 1), check=False)
            _run("ip", "netns", "del", ns, check=False)
        self._made_ns = []
        if self._made_bridge:
            _run("ip", "link", "del", self.bridge, check=False)
            self._made_bridge = False
        forget_made(self.tag)

    # ---- faults ----------------------------------------------------------

    def _iptables(self, i, *args, check=True):
        _run("ip", "netns", "exec", self.endpoints[i].netns, "iptables", "-w", "5", *args,
             check=check)

    def _add_rule(self, owner, i, spec):
        self._iptables(i, "-A", *spec)
        self._rules.append((owner, i, spec))

    def block(self, dst, src, owner="partition"):
        """Packets from member src to member dst are dropped at dst (one way)."""
        self._add_rule(owner, dst, ("INPUT", "-s", self.ip(src), "-j", "DROP"))

    def partition(self, groups, owner="partition"):
        """Members in different groups cannot talk to each other."""
        for gi, g in enumerate(groups):
            for h in groups[gi + 1:]:
                for a in g:
                    for b in h:
                        self.block(a, b, owner)
                        self.block(b, a, owner)

    def lose(self, i, probability, owner="loss"):
        """Drops a fraction of the packets member i receives from its peers."""
        for j in range(self.size):
            if j != i:
                self._add_rule(owner, i, ("INPUT", "-s", self.ip(j), "-m", "statistic",
                                          "--mode", "random", "--probability",
                                          "%.3f" % probability, "-j", "DROP"))

    def heal(self, owner=None):
        """Removes the rules of one owner (every rule when None)."""
        keep = []
        for rule in reversed(self._rules):
            if owner is None or rule[0] == owner:
                self._iptables(rule[1], "-D", *rule[2], check=False)
            else:
                keep.append(rule)
        self._rules = list(reversed(keep))
        if owner is None:  # whatever is left, e.g. after a failed delete
            for i in range(len(self.endpoints)):
                self._iptables(i, "-F", "INPUT", check=False)


class LoopbackNetwork:
    kind = "loopback"
    can_partition = False

    def __init__(self, tag, size):
        self.tag = tag
        self.size = size
        self.endpoints = []
        self.harness_ip = "127.0.0.1"

    def setup(self):
        ports = itest._free_ports(4 * self.size)
        for i in range(self.size):
            p = ports[4 * i:4 * i + 4]
            self.endpoints.append(Endpoint(i, "127.0.0.1", p[0], p[1], p[2], p[3]))

    def close(self):
        pass

    def heal(self, owner=None):
        pass


def namespaces_unavailable_reason():
    """None when this process can build namespaces, else why not."""
    if os.geteuid() != 0:
        return "not running as root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return "%s is not installed" % tool
    probe = "cfprobe%d" % os.getpid()
    r = _run("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return "ip netns add failed: %s" % r.stderr.strip()
    try:
        r = _run("ip", "netns", "exec", probe, "iptables", "-w", "5", "-S", check=False)
        if r.returncode != 0:
            return "iptables inside a namespace failed: %s" % r.stderr.strip()
    finally:
        _run("ip", "netns", "del", probe, check=False)
    return None


def make_network(tag, size, want_namespaces=True):
    """(network, note): namespaces where possible, else loopback and why."""
    reason = namespaces_unavailable_reason() if want_namespaces else "loopback requested"
    if reason is None:
        reap_stale()
    if reason is None:
        net = NamespaceNetwork(tag, size)
        try:
            net.setup()
            return net, "network namespaces %s.0/24 on bridge %s" % (net.prefix, net.bridge)
        except Exception as e:  # noqa: BLE001 - any failure means: fall back
            reason = "namespace setup failed: %s" % e
    net = LoopbackNetwork(tag, size)
    net.setup()
    return net, ("loopback ports (%s); partitions and packet loss are skipped" % reason)
