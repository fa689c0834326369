# The wire messages of Conclave's native KV API. kv_pb2.py is protoc's output
# for proto/conclave/kvpb/kv.proto (regenerate with `make python-client`; the
# test suite fails when it is out of date).
