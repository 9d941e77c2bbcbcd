"""Transport: the versioned msgpack schema (`schema`), message builders (`messages`) and ZeroMQ
publisher / subscriber helpers (`sockets`). Frames stay in shared memory; only small messages and
viewer JPEGs travel over ZeroMQ, and nothing received is ever unpickled."""

from .schema import SCHEMA_VERSION, SchemaError, decode, encode, topic

__all__ = ["SCHEMA_VERSION", "SchemaError", "decode", "encode", "topic"]
