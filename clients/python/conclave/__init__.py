"""A Python client of Conclave's native key-value API.

    import conclave
    c = conclave.Client(["127.0.0.1:2379"])
    c.put(b"k", b"v")
    c.get(b"k")                  # b"v"
    c.scan(b"a", b"z")           # [KeyValue(key=b"k", value=b"v", timestamp=...)]
    c.ranges()                   # the ranges the endpoint holds
    c.split(b"m")                # two ranges where there was one

Keys and values are bytes (str is encoded as UTF-8). Needs Debian's
python3-grpcio and python3-protobuf.
"""

from conclave.client import (  # noqa: F401
    Client,
    ConclaveError,
    ConditionFailed,
    InvalidArgument,
    KeyValue,
    NodeInfo,
    RangeInfo,
    SYSTEM_KEYS,
    Timestamp,
    Unavailable,
)
