"""A strict decoder of OTLP/HTTP protobuf trace exports (opentelemetry-proto's
collector/trace/v1 ExportTraceServiceRequest) into the OTLP JSON mapping (lowerCamelCase names,
ids as hex, 64-bit integers as decimal strings, enums as numbers), so one set of checks reads
what the router sends. Written from the .proto field numbers, for the tests (no protobuf package
in Debian's Python is needed).

Strict: an unknown field number, a wire type that does not match the field's type, a truncated
or overlong value, or a string that is not valid UTF-8 raises ValueError: a real collector
would reject or misread such a payload."""

import struct

VARINT, I64, LEN, I32 = 0, 1, 2, 5

# message name -> {field number: (json name, type, repeated)}; type: a message name, or one of
# string, hexbytes, bytes, fixed64 (a string), fixed32, enum, uint32, int64 (a string), bool, double.
SCHEMA = {
    "ExportTraceServiceRequest": {1: ("resourceSpans", "ResourceSpans", True)},
    "ResourceSpans": {1: ("resource", "Resource", False), 2: ("scopeSpans", "ScopeSpans", True),
                      3: ("schemaUrl", "string", False)},
    "Resource": {1: ("attributes", "KeyValue", True), 2: ("droppedAttributesCount", "uint32", False)},
    "ScopeSpans": {1: ("scope", "InstrumentationScope", False), 2: ("spans", "Span", True),
                   3: ("schemaUrl", "string", False)},
    "InstrumentationScope": {1: ("name", "string", False), 2: ("version", "string", False),
                             3: ("attributes", "KeyValue", True), 4: ("droppedAttributesCount", "uint32", False)},
    "Span": {1: ("traceId", "hexbytes", False), 2: ("spanId", "hexbytes", False), 3: ("traceState", "string", False),
             4: ("parentSpanId", "hexbytes", False), 16: ("flags", "fixed32", False), 5: ("name", "string", False),
             6: ("kind", "enum", False), 7: ("startTimeUnixNano", "fixed64", False),
             8: ("endTimeUnixNano", "fixed64", False), 9: ("attributes", "KeyValue", True),
             10: ("droppedAttributesCount", "uint32", False), 11: ("events", "Event", True),
             12: ("droppedEventsCount", "uint32", False), 13: ("links", "Link", True),
             14: ("droppedLinksCount", "uint32", False), 15: ("status", "Status", False)},
    "Event": {1: ("timeUnixNano", "fixed64", False), 2: ("name", "string", False),
              3: ("attributes", "KeyValue", True), 4: ("droppedAttributesCount", "uint32", False)},
    "Link": {1: ("traceId", "hexbytes", False), 2: ("spanId", "hexbytes", False), 3: ("traceState", "string", False),
             4: ("attributes", "KeyValue", True), 5: ("droppedAttributesCount", "uint32", False),
             6: ("flags", "fixed32", False)},
    "Status": {2: ("message", "string", False), 3: ("code", "enum", False)},
    "KeyValue": {1: ("key", "string", False), 2: ("value", "AnyValue", False)},
    # a oneof: exactly the member written is kept, even at its default value
    "AnyValue": {1: ("stringValue", "string", False), 2: ("boolValue", "bool", False), 3: ("intValue", "int64", False),
                 4: ("doubleValue", "double", False), 5: ("arrayValue", "ArrayValue", False),
                 6: ("kvlistValue", "KeyValueList", False), 7: ("bytesValue", "bytes", False)},
    "ArrayValue": {1: ("values", "AnyValue", True)},
    "KeyValueList": {1: ("values", "KeyValue", True)},
}
WIRE = {"string": LEN, "hexbytes": LEN, "bytes": LEN, "fixed64": I64, "fixed32": I32, "enum": VARINT,
        "uint32": VARINT, "int64": VARINT, "bool": VARINT, "double": I64}
ONEOF = {"AnyValue"}


def _varint(buf, i):
    value, shift = 0, 0
    for k in range(10):
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if k == 9 and b > 1:
                raise ValueError("varint above 64 bits")
            return value, i
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def _scalar(kind, wire, buf, i):
    if wire == VARINT:
        v, i = _varint(buf, i)
        if kind == "int64":
            return str(v - (1 << 64) if v >= 1 << 63 else v), i
        if kind == "bool":
            if v > 1:
                raise ValueError("bool %d" % v)
            return bool(v), i
        if kind in ("uint32", "enum") and v >= 1 << 32:
            raise ValueError("%s out of range: %d" % (kind, v))
        return v, i
    if wire == I64:
        if i + 8 > len(buf):
            raise ValueError("truncated fixed64")
        raw = bytes(buf[i:i + 8])
        if kind == "double":
            return struct.unpack("<d", raw)[0], i + 8
        return str(struct.unpack("<Q", raw)[0]), i + 8
    if i + 4 > len(buf):
        raise ValueError("truncated fixed32")
    return struct.unpack("<I", bytes(buf[i:i + 4]))[0], i + 4


def decode(buf, message="ExportTraceServiceRequest"):
    """The message in `buf` (bytes) as a dict in the OTLP JSON mapping."""
    fields = SCHEMA[message]
    out = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if number not in fields:
            raise ValueError("%s: unknown field %d" % (message, number))
        name, kind, repeated = fields[number]
        expected = LEN if kind in SCHEMA else WIRE[kind]
        if wire != expected:
            raise ValueError("%s.%s: wire type %d, expected %d" % (message, name, wire, expected))
        if wire == LEN:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("%s.%s: length %d beyond the message" % (message, name, n))
            chunk = bytes(buf[i:i + n])
            i += n
            if kind in SCHEMA:
                value = decode(chunk, kind)
            elif kind == "string":
                value = chunk.decode("utf-8")  # strict: raises on invalid UTF-8
            elif kind == "hexbytes":
                value = chunk.hex()
            else:  # bytes: base64 in the JSON mapping; the tests only need it as something
                value = chunk.hex()
        else:
            value, i = _scalar(kind, wire, buf, i)
        if repeated:
            out.setdefault(name, []).append(value)
        else:
            if name in out and kind in SCHEMA:
                raise ValueError("%s.%s: a message written twice" % (message, name))
            out[name] = value
    if message in ONEOF and len(out) > 1:
        raise ValueError("AnyValue with %d members" % len(out))
    return out
