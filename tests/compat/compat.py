"""Differential runner: the same scenario against etcd and against Conclave.

Each test module starts two 3-member clusters once (the reference, the `etcd`
binary on PATH, and the candidate, CONCLAVE_BIN) through the integration
suites' cluster.py. A scenario is a function of one Recorder; it drives
etcdctl and python-etcd3 against one system and the Recorder writes every step
into a transcript: the command, its normalized stdout and stderr and its exit
code, or, for a python call, a normalized rendering of the result or of the
exception. The scenario runs against the reference first, then against the
candidate, and the test fails with a unified diff when the two transcripts
differ.

Normalization (Normalizer below) masks only what two correct systems may
legitimately disagree on: member, cluster and lease ids, ports and URLs, the
work directory, durations, remaining TTLs, raft term and index, db sizes,
version strings and hash values. Revisions, versions, values, counts, error
texts, exit codes and event order are compared as they are.

Scenarios share a cluster, so each uses its own key prefix. Before a scenario
runs, the system whose revision is behind is brought level by writes to a
padding key, so that a scenario that went wrong on one side does not shift
every revision of the scenarios after it.

Every wait has a bound: each etcdctl runs under `timeout`, background
commands are killed by pid, python calls carry the client's RPC timeout.
"""

import base64
import difflib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "integration"))

import cluster  # noqa: E402  (the path above makes it importable)
import etcd3  # noqa: E402
import etcd3.events  # noqa: E402
import etcd3.leases  # noqa: E402
import etcd3.members  # noqa: E402
import etcd3.etcdrpc as etcdrpc  # noqa: E402
import grpc  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool  # noqa: E402
from google.protobuf import message_factory  # noqa: E402

CTL_TIMEOUT_S = 20
BG_TIMEOUT_S = 40
PAD_KEY = "compat-pad"

# The module, which the package shadows with its client() function.
etcd3_client = sys.modules["etcd3.client"]

# Ids are large random numbers; nothing else a scenario prints is this long.
MIN_ID_DIGITS = 12


# ---- systems ----------------------------------------------------------------

def reference_binary():
    binary = shutil.which("etcd")
    if not binary:
        raise RuntimeError("the compat suite compares against etcd 3.4, but no `etcd` "
                           "binary is on PATH (install the Debian etcd-server package)")
    if not shutil.which("etcdctl"):
        raise RuntimeError("the compat suite needs `etcdctl` (etcd 3.4) on PATH")
    return binary


def candidate_binary():
    binary = os.environ.get("CONCLAVE_BIN")
    if not binary:
        raise RuntimeError("set CONCLAVE_BIN to the conclave binary under test")
    if not os.access(binary, os.X_OK):
        raise RuntimeError("CONCLAVE_BIN=%s is not an executable file" % binary)
    return binary


class System:
    """One started cluster and what the normalizer needs to know about it."""

    def __init__(self, label, cluster_):
        self.label = label
        self.cluster = cluster_
        self.member_ids = [cluster_.member_id(i) for i in range(cluster_.size)]
        self.cluster_id = cluster_.status(0).header.cluster_id

    @property
    def size(self):
        return self.cluster.size

    def revision(self):
        def read():
            return self.cluster.client(0).kvstub.Range(
                etcdrpc.RangeRequest(key=PAD_KEY.encode()), cluster.RPC_TIMEOUT_S).header.revision
        return cluster.retry(read, what="revision of %s" % self.label)

    def pad_to(self, revision):
        """Writes the padding key until this system's revision reaches revision."""
        deadline = time.monotonic() + 30
        while self.revision() < revision:
            if time.monotonic() > deadline:
                raise TimeoutError("could not pad %s to revision %d" % (self.label, revision))
            self.cluster.client(0).put(PAD_KEY, "x")


# ---- normalization ------------------------------------------------------------

# Text masks applied to every output, in order.
TEXT_MASKS = [
    (re.compile(r"took = \S+"), "took = <duration>"),
    # etcdctl prints member and cluster ids with %16x: shorter ids get padding.
    (re.compile(r"\b(Member|cluster) +"), r"\1 "),
    (re.compile(r"remaining\(-?\d+s\)"), "remaining(<ttl>)"),
    (re.compile(r'"ttl":-?\d+'), '"ttl":<ttl>'),
    (re.compile(r'"raft_term":\d+'), '"raft_term":<term>'),
    (re.compile(r'"(raftTerm|raftIndex|raftAppliedIndex|dbSize|dbSizeInUse)":\d+'),
     r'"\1":<\1>'),
    (re.compile(r'"hash":\d+'), '"hash":<hash>'),
    (re.compile(r'"RaftTerm" : \d+'), '"RaftTerm" : <term>'),
    (re.compile(r'"hash_revision":\d+'), '"hash_revision":<hash_revision>'),
    # etcdctl's client logs a JSON line per failed RPC attempt.
    (re.compile(r'"ts":("[^"]*"|[0-9.e+]+)'), '"ts":"<ts>"'),
    (re.compile(r'"took":("[^"]*"|[0-9.e+-]+)'), '"took":"<duration>"'),
    (re.compile(r"endpoint://client-[0-9a-f-]+/"), "endpoint://client-<uuid>/"),
]

# etcdctl -w json prints keys and values in base64; they are shown decoded so
# that ids inside them (lock and election keys end in a lease id) get masked.
B64_FIELD = re.compile(r'"(key|value)":"([A-Za-z0-9+/]*={0,2})"')


def _decode_b64_field(m):
    try:
        decoded = base64.b64decode(m.group(2), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return m.group(0)
    if not decoded.isprintable():
        return m.group(0)
    return '"%s":b64%s' % (m.group(1), json.dumps(decoded))


HEX_TOKEN = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{%d,16}(?![0-9A-Za-z])" % 8)
DEC_TOKEN = re.compile(r"(?<![0-9A-Za-z.])\d{%d,20}(?![0-9A-Za-z])" % MIN_ID_DIGITS)


class Normalizer:
    """Maps one system's ids, addresses and paths to stable placeholders.

    Member ids become <id:n1>.. (or a role name a scenario assigns), the
    cluster id <cluster-id>, and any other id (leases, members added by a
    scenario) <id#1>, <id#2>.. in order of first appearance, so that the same
    lease keeps one name through a transcript in hex and in decimal.
    """

    def __init__(self, system):
        self.system = system
        self.names = ["n%d" % (i + 1) for i in range(system.size)]
        self.ids = {}
        self._fresh = 0
        self._set_member_names()

    def _set_member_names(self):
        for i, mid in enumerate(self.system.member_ids):
            self.ids[mid] = "<id:%s>" % self.names[i]
        self.ids[self.system.cluster_id] = "<cluster-id>"

    def set_roles(self, names):
        """Renames members by role (say, leader and followers) for one scenario."""
        self.names = list(names)
        self._set_member_names()

    def _id(self, value):
        name = self.ids.get(value)
        if name is None:
            self._fresh += 1
            name = self.ids[value] = "<id#%d>" % self._fresh
        return name

    def register(self, value):
        """Makes value a known id (for ids printed shorter than the heuristics catch)."""
        return self._id(int(value))

    def __call__(self, text):
        if not text:
            return text
        c = self.system.cluster
        text = text.replace(c.workdir, "<workdir>")
        for i, m in enumerate(c.members):
            for port, kind in ((m.client_port, "client"), (m.peer_port, "peer"),
                               (m.metrics_port, "metrics")):
                text = re.sub(r"(?<=[:/])%d(?!\d)" % port, "<%s-%s>" % (self.names[i], kind), text)
        for pattern, repl in TEXT_MASKS:
            text = pattern.sub(repl, text)
        text = B64_FIELD.sub(_decode_b64_field, text)

        def hex_id(mt):
            tok = mt.group(0)
            value = int(tok, 16)
            if value in self.ids:
                return self.ids[value]
            if tok.isdigit() and len(tok) >= MIN_ID_DIGITS and int(tok) in self.ids:
                return self.ids[int(tok)]
            if len(tok) >= MIN_ID_DIGITS and not tok.isdigit():
                return self._id(value)
            return tok

        def dec_id(mt):
            return self._id(int(mt.group(0)))

        text = HEX_TOKEN.sub(hex_id, text)
        return DEC_TOKEN.sub(dec_id, text)


# ---- python results as plain data ------------------------------------------------

def plain(value):
    """A python-etcd3 result as json-able data, without object addresses."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return "bytes:" + value.hex()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, etcd3_client.KVMetadata):
        return {"key": plain(value.key), "create_revision": value.create_revision,
                "mod_revision": value.mod_revision, "version": value.version,
                "lease_id": value.lease_id}
    if isinstance(value, etcd3.events.Event):
        ev = {"type": type(value).__name__, "key": plain(value.key),
              "value": plain(value.value), "create_revision": value.create_revision,
              "mod_revision": value.mod_revision, "version": value.version,
              "lease": value.lease}
        if value._event.HasField("prev_kv"):
            ev["prev_value"] = plain(value.prev_value)
        return ev
    if isinstance(value, etcd3.leases.Lease):
        return {"lease": value.id, "ttl": value.ttl}
    if isinstance(value, etcd3.members.Member):
        return {"member": value.id, "name": value.name, "peer_urls": list(value.peer_urls),
                "client_urls": list(value.client_urls)}
    if isinstance(value, etcd3_client.Alarm):
        return {"alarm": value.alarm_type, "member": value.member_id}
    if hasattr(value, "DESCRIPTOR"):
        return _mask_fields(_message(value))
    return "<%s>" % type(value).__name__


def _field_value(fd, v):
    if fd.type == fd.TYPE_MESSAGE:
        return _message(v)
    if fd.type == fd.TYPE_ENUM:
        return fd.enum_type.values_by_number[v].name if v in fd.enum_type.values_by_number else v
    return plain(v)


def _message(msg):
    """A protobuf message as a dict of its set fields; bytes decoded, ints kept ints."""
    out = {}
    for fd, v in msg.ListFields():
        if fd.label == fd.LABEL_REPEATED:
            out[fd.name] = [_field_value(fd, x) for x in v]
        else:
            out[fd.name] = _field_value(fd, v)
    return out


# Fields of responses that differ legitimately between two systems.
MASKED_FIELDS = {"raft_term", "raftTerm", "raftIndex", "raftAppliedIndex", "dbSize",
                 "dbSizeInUse", "hash", "hash_revision"}


def _mask_fields(d):
    if isinstance(d, dict):
        return {k: ("<%s>" % k if k in MASKED_FIELDS else _mask_fields(v)) for k, v in d.items()}
    if isinstance(d, list):
        return [_mask_fields(v) for v in d]
    return d


def describe_exception(e):
    if isinstance(e, grpc.RpcError) and hasattr(e, "code"):
        return "raise RpcError %s: %s" % (e.code().name, e.details())
    return "raise %s: %s" % (type(e).__name__, e)


# ---- the transcript ------------------------------------------------------------

class ScenarioAbort(Exception):
    """A step found something that makes the rest of the scenario meaningless."""


class Background:
    """An etcdctl command left running (watch, lock, elect); read its output file."""

    def __init__(self, recorder, title, proc, out_path, err_path):
        self.recorder = recorder
        self.title = title
        self.proc = proc
        self.out_path = out_path
        self.err_path = err_path
        self.stopped = False

    def output(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def wait_output(self, done, timeout_s=10):
        """Waits until done(stdout so far) holds; returns whether it did."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done(self.output()):
                return True
            if self.proc.poll() is not None:
                return done(self.output())
            time.sleep(0.05)
        return False

    def wait_lines(self, count, timeout_s=10):
        return self.wait_output(lambda text: text.count("\n") >= count, timeout_s)

    def stop(self, sig=signal.SIGTERM, timeout_s=10):
        """Signals the command (through `timeout`, which passes it on) and waits."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)
        self.stopped = True

    def record(self, label=None, exit_code=False):
        """Writes the output so far (and, once stopped, the exit code) as one step."""
        with open(self.err_path, errors="replace") as f:
            err = f.read()
        step = {"background": label or self.title, "stdout": self.output(), "stderr": err}
        if exit_code:
            step["exit"] = self.proc.returncode
        self.recorder._write(step)


class Recorder:
    """Runs one scenario's steps against one system and writes its transcript."""

    def __init__(self, system):
        self.system = system
        self.cluster = system.cluster
        self.norm = Normalizer(system)
        self.lines = []
        self.raw = {}
        self._backgrounds = []
        self._seq = 0

    # -- writing --

    def _write(self, step):
        n = self.norm
        if "cmd" in step:
            self.lines.append("$ " + n(step["cmd"]))
        elif "py" in step:
            self.lines.append(">>> " + n(step["py"]))
        elif "background" in step:
            self.lines.append("& " + n(step["background"]))
        elif "note" in step:
            self.lines.append("# " + n(step["note"]))
        for stream in ("stdout", "stderr"):
            text = step.get(stream)
            if text:
                text = n(text)
                if step.get("sort"):
                    text = "\n".join(sorted(text.splitlines())) + "\n"
                self.lines.extend("%s| %s" % (stream[3:], line) for line in text.splitlines())
        if "exit" in step:
            self.lines.append("exit %s" % step["exit"])
        if "result" in step:
            self.lines.append("= " + n(step["result"]))

    def note(self, title, value=None):
        """Records a value the scenario computed (a check, a count)."""
        self._write({"note": title if value is None else "%s: %s" % (title,
                                                                    json.dumps(plain(value)))})

    def roles(self, names):
        self.norm.set_roles(names)

    def assign_roles(self):
        """Names members by role: "leader", "follower1", "follower2" (by index).

        Which member leads is up to each system's election; what a scenario
        compares is what the leader and the followers report, so it addresses
        members by role too: returns their indexes, leader first.
        """
        leader = self.cluster.leader_index()
        names, n = [], 0
        for i in range(self.cluster.size):
            if i == leader:
                names.append("leader")
            else:
                n += 1
                names.append("follower%d" % n)
        self.roles(names)
        return [leader] + [i for i in range(self.cluster.size) if i != leader]

    def register_id(self, value):
        self.norm.register(value)

    # -- etcdctl --

    def endpoints(self, member):
        members = self.cluster.members
        if member == "all":
            return ",".join(m.client_url for m in members)
        if isinstance(member, (list, tuple)):
            return ",".join(members[i].client_url for i in member)
        return members[member].client_url

    def _ctl_cmd(self, args, member, timeout_s):
        return (["timeout", "-k", "5", str(timeout_s), "etcdctl",
                 "--endpoints=" + self.endpoints(member), "--command-timeout=5s"]
                + [str(a) for a in args])

    def _title(self, args, member):
        where = member if isinstance(member, str) else (
            ",".join(self.norm.names[i] for i in member) if isinstance(member, (list, tuple))
            else self.norm.names[member])
        return "[%s] etcdctl %s" % (where, " ".join(_quote(str(a)) for a in args))

    def ctl(self, *args, member=0, input=None, timeout_s=CTL_TIMEOUT_S, sort=False,
            mask=None, record=True):
        """Runs etcdctl against `member` (an index, a list of them or "all").

        mask(stdout, stderr) -> (stdout, stderr) masks step-specific fields
        before the common normalization; sort orders the output lines (for
        lists whose order follows random ids). Returns the CompletedProcess.
        """
        cmd = self._ctl_cmd(args, member, timeout_s)
        try:
            res = subprocess.run(cmd, input=input, capture_output=True, text=True,
                                 timeout=timeout_s + 10, env=_ctl_env())
        except subprocess.TimeoutExpired:
            res = subprocess.CompletedProcess(cmd, "timeout", "", "python-side timeout")
        if record:
            out, err = res.stdout, res.stderr
            if mask is not None:
                out, err = mask(out, err)
            step = {"cmd": self._title(args, member), "stdout": out, "stderr": err,
                    "exit": res.returncode, "sort": sort}
            if input is not None:
                step["cmd"] += "  <<< " + json.dumps(input)
            self._write(step)
        return res

    def ctl_ok(self, *args, **kwargs):
        """ctl, but the scenario cannot go on if the command failed."""
        res = self.ctl(*args, **kwargs)
        if res.returncode != 0:
            raise ScenarioAbort("etcdctl %s exited %s" % (" ".join(map(str, args)),
                                                          res.returncode))
        return res.stdout

    def bg(self, *args, member=0, timeout_s=BG_TIMEOUT_S, title=None):
        """Starts etcdctl in the background; returns a Background."""
        self._seq += 1
        base = os.path.join(self.cluster.workdir, "bg-%d-%d" % (os.getpid(), time.monotonic_ns()))
        cmd = self._ctl_cmd(args, member, timeout_s)
        with open(base + ".out", "w") as out, open(base + ".err", "w") as err:
            proc = subprocess.Popen(cluster.dies_with_parent(cmd), stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env=_ctl_env())
        b = Background(self, title or self._title(args, member), proc, base + ".out",
                       base + ".err")
        self._backgrounds.append(b)
        return b

    # -- python-etcd3 --

    def client(self, member=0):
        return self.cluster.client(member)

    def py(self, title, fn, member=0, mask=None, timeout_retries=0):
        """Calls fn(client of member); records the result or the exception.

        Returns the raw result, or the exception object when it raised.
        With timeout_retries, an idempotent step that timed out (a busy
        machine, on either system) is called again, up to that many times;
        only the last answer is recorded.
        """
        for attempt in range(timeout_retries + 1):
            try:
                value = fn(self.client(member))
                shown = json.dumps(plain(value), sort_keys=True)
                result = value
            except Exception as e:  # noqa: BLE001 - the exception is the step's result
                shown = describe_exception(e)
                result = e
                if "ConnectionTimeoutError" in shown and attempt < timeout_retries:
                    time.sleep(0.5)
                    continue
            break
        if mask is not None:
            shown = mask(shown)
        self._write({"py": "[%s] %s" % (self.norm.names[member], title), "result": shown})
        return result

    def py_ok(self, title, fn, member=0, mask=None):
        value = self.py(title, fn, member, mask)
        if isinstance(value, Exception):
            raise ScenarioAbort("%s raised %s" % (title, describe_exception(value)))
        return value

    def grpc(self, member=0):
        """A raw gRPC channel to member (closed with the scenario)."""
        ch = grpc.insecure_channel("127.0.0.1:%d" % self.cluster.members[member].client_port)
        self._channels.append(ch)
        return ch

    # -- helpers --

    def leader(self):
        return self.cluster.leader_index()

    def revision(self):
        return self.system.revision()

    def close(self):
        for b in self._backgrounds:
            if b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait(timeout=10)
        for ch in getattr(self, "_channels", []):
            ch.close()

    def text(self):
        return "\n".join(self.lines) + "\n"


def _ctl_env():
    return dict(os.environ, ETCDCTL_API="3")


def _quote(s):
    if len(s) > 200:
        return "<%d-byte argument sha256 %s>" % (len(s), hashlib.sha256(s.encode()).hexdigest())
    if s and re.fullmatch(r"[\w@%+=:,./~<>-]+", s):
        return s
    return json.dumps(s)


# ---- raw gRPC for the Lock and Election services ---------------------------------
# python-etcd3 ships no stubs for etcd's v3lock and v3election services; their
# messages are small, so they are described here and built at import time.

def _field(msg, name, number, ftype, type_name=None, label=1):
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name


def _build_concurrency_messages():
    fd = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.Default()
    files = {}
    for fname, package in (("compat_v3lock.proto", "v3lockpb"),
                           ("compat_v3election.proto", "v3electionpb")):
        try:
            pool.FindFileByName(fname)
            continue
        except KeyError:
            pass
        f = descriptor_pb2.FileDescriptorProto(name=fname, package=package, syntax="proto3",
                                               dependency=["rpc.proto", "kv.proto"])
        files[package] = f
    header = ".etcdserverpb.ResponseHeader"
    if "v3lockpb" in files:
        f = files["v3lockpb"]
        m = f.message_type.add(name="LockRequest")
        _field(m, "name", 1, fd.TYPE_BYTES)
        _field(m, "lease", 2, fd.TYPE_INT64)
        m = f.message_type.add(name="LockResponse")
        _field(m, "header", 1, fd.TYPE_MESSAGE, header)
        _field(m, "key", 2, fd.TYPE_BYTES)
        m = f.message_type.add(name="UnlockRequest")
        _field(m, "key", 1, fd.TYPE_BYTES)
        m = f.message_type.add(name="UnlockResponse")
        _field(m, "header", 1, fd.TYPE_MESSAGE, header)
        pool.Add(f)
    if "v3electionpb" in files:
        f = files["v3electionpb"]
        lk = ".v3electionpb.LeaderKey"
        m = f.message_type.add(name="LeaderKey")
        _field(m, "name", 1, fd.TYPE_BYTES)
        _field(m, "key", 2, fd.TYPE_BYTES)
        _field(m, "rev", 3, fd.TYPE_INT64)
        _field(m, "lease", 4, fd.TYPE_INT64)
        m = f.message_type.add(name="CampaignRequest")
        _field(m, "name", 1, fd.TYPE_BYTES)
        _field(m, "lease", 2, fd.TYPE_INT64)
        _field(m, "value", 3, fd.TYPE_BYTES)
        m = f.message_type.add(name="CampaignResponse")
        _field(m, "header", 1, fd.TYPE_MESSAGE, header)
        _field(m, "leader", 2, fd.TYPE_MESSAGE, lk)
        m = f.message_type.add(name="ProclaimRequest")
        _field(m, "leader", 1, fd.TYPE_MESSAGE, lk)
        _field(m, "value", 2, fd.TYPE_BYTES)
        m = f.message_type.add(name="ProclaimResponse")
        _field(m, "header", 1, fd.TYPE_MESSAGE, header)
        m = f.message_type.add(name="LeaderRequest")
        _field(m, "name", 1, fd.TYPE_BYTES)
        m = f.message_type.add(name="LeaderResponse")
        _field(m, "header", 1, fd.TYPE_MESSAGE, header)
        _field(m, "kv", 2, fd.TYPE_MESSAGE, ".mvccpb.KeyValue")
        m = f.message_type.add(name="ResignRequest")
        _field(m, "leader", 1, fd.TYPE_MESSAGE, lk)
        m = f.message_type.add(name="ResignResponse")
        _field(m, "header", 1, fd.TYPE_MESSAGE, header)
        pool.Add(f)
    names = ["v3lockpb." + n for n in ("LockRequest", "LockResponse", "UnlockRequest",
                                       "UnlockResponse")]
    names += ["v3electionpb." + n for n in (
        "LeaderKey", "CampaignRequest", "CampaignResponse", "ProclaimRequest",
        "ProclaimResponse", "LeaderRequest", "LeaderResponse", "ResignRequest",
        "ResignResponse")]
    classes = {}
    for n in names:
        desc = pool.FindMessageTypeByName(n)
        classes[n.split(".")[1]] = message_factory.GetMessageClass(desc) if hasattr(
            message_factory, "GetMessageClass") else message_factory.MessageFactory(
            pool).GetPrototype(desc)
    return classes


MSG = _build_concurrency_messages()


def unary(channel, method, request, response_name, timeout_s=cluster.RPC_TIMEOUT_S):
    """Calls a unary method (say "/v3lockpb.Lock/Lock") with hand-built messages."""
    call = channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=MSG[response_name].FromString)
    return call(request, timeout=timeout_s)


def server_stream(channel, method, request, response_name):
    call = channel.unary_stream(method, request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=MSG[response_name].FromString)
    return call(request)


# ---- the test case -----------------------------------------------------------------

class CompatTestCase(unittest.TestCase):
    """One reference and one candidate cluster per test class."""

    reference = None
    candidate = None
    maxDiff = None
    # Seconds to wait after both clusters are up before the first scenario.
    SETTLE_S = 0

    @classmethod
    def setUpClass(cls):
        ref_bin = reference_binary()
        cand_bin = candidate_binary()
        tag = "compat-" + cls.__name__
        ref = cluster.make_cluster(ref_bin, 3, tag + "-ref")
        try:
            cls.reference = System("reference", ref)
            cand = cluster.make_cluster(cand_bin, 3, tag + "-cand")
        except BaseException:
            ref.close()
            raise
        try:
            cls.candidate = System("candidate", cand)
        except BaseException:
            ref.close()
            cand.close()
            raise
        time.sleep(cls.SETTLE_S)

    @classmethod
    def tearDownClass(cls):
        for s in (cls.reference, cls.candidate):
            if s is not None:
                s.cluster.close()
        cls.reference = cls.candidate = None

    def _run_one(self, system, fn):
        r = Recorder(system)
        r._channels = []
        try:
            fn(r)
        except ScenarioAbort as e:
            r.lines.append("!! scenario stopped: %s" % r.norm(str(e)))
        except Exception as e:  # noqa: BLE001 - an unexpected failure is part of the diff
            r.lines.append("!! scenario failed: %s" % r.norm(describe_exception(e)))
        finally:
            r.close()
        return r.text()

    def compare(self, fn):
        ref, cand = self.reference, self.candidate
        for s in (ref, cand):
            s.cluster.check_alive()
        target = max(ref.revision(), cand.revision())
        ref.pad_to(target)
        cand.pad_to(target)
        want = self._run_one(ref, fn)
        got = self._run_one(cand, fn)
        dump = os.environ.get("CONCLAVE_COMPAT_DUMP")
        if dump:
            os.makedirs(dump, exist_ok=True)
            base = os.path.join(dump, "%s.%s" % (type(self).__name__, fn.__name__))
            for suffix, text in ((".reference", want), (".candidate", got)):
                with open(base + suffix, "w") as f:
                    f.write(text)
        if "!! scenario" in want:
            self.fail("scenario %s failed against the reference etcd:\n%s"
                      % (fn.__name__, want))
        if want != got:
            diff = "".join(difflib.unified_diff(
                want.splitlines(True), got.splitlines(True),
                "etcd (%s)" % os.path.basename(ref.cluster.binary),
                "candidate (%s)" % cand.cluster.binary))
            self.fail("transcripts differ for %s:\n%s" % (fn.__name__, diff))


def scenario(fn):
    """Turns fn(recorder) into a test method comparing both systems."""
    def test(self):
        self.compare(fn)
    test.__name__ = fn.__name__
    test.__doc__ = fn.__doc__
    return test


def wait_for(predicate, timeout_s, interval_s=0.05):
    """Polls predicate until true or the deadline; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)


class Collector:
    """Gathers python-etcd3 watch callbacks into a list, with bounded waits."""

    def __init__(self):
        self.items = []
        self._cond = threading.Condition()

    def __call__(self, item):
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def events(self):
        out = []
        for item in self.items:
            if isinstance(item, Exception):
                out.append(describe_exception(item))
            else:
                out.extend(plain(e) for e in item.events)
        return out

    def wait(self, count, timeout_s=10):
        """Waits until count events (or an error) arrived; returns events()."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.events()) < count and not any(
                    isinstance(i, Exception) for i in self.items):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        return self.events()
