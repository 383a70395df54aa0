"""Requests and results as ZeroMQ multipart frames, without pickle.

A message is ``[kind, header, *arrays]``: ``kind`` one byte naming the message,
``header`` msgpack (msgspec) with the scalar fields of every item and, for each
array field, its dtype, shape and frame number; each array travels as its own frame
(no copy on send, a read-only view on receive). Many requests or results share one
message when a stream floods.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, TypeVar

import msgspec
import numpy as np
from seamcut.server.engine.protocol import ErrorCode, Kind, Request, Result

HELLO = b"H"  # worker -> engine: {"epoch": n}
READY = b"R"  # engine -> worker: {"epoch": n, "info": {...}}
REQUESTS = b"Q"  # worker -> engine
RESULTS = b"A"  # engine -> worker
CANCEL = b"C"  # worker -> engine: {"streams": [...]}

T = TypeVar("T", Request, Result)
_ENUMS: dict[str, type[IntEnum]] = {"kind": Kind, "error": ErrorCode}
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def pack(kind: bytes, items: Sequence[Request | Result], **extra: Any) -> list[Any]:
    """Frames for one message carrying ``items`` (and ``extra`` header fields)."""
    frames: list[Any] = []
    heads = []
    for item in items:
        head: dict[str, Any] = {}
        for f in dataclasses.fields(item):
            v = getattr(item, f.name)
            if isinstance(v, np.ndarray):
                a = np.ascontiguousarray(v)
                head[f.name] = ("@", a.dtype.str, list(a.shape), len(frames))
                frames.append(a.data.cast("B") if a.size else b"")
            elif isinstance(v, IntEnum):
                head[f.name] = int(v)
            elif isinstance(v, tuple):
                head[f.name] = list(v)
            else:
                head[f.name] = v
        heads.append(head)
    return [kind, _encoder.encode({"items": heads, **extra}), *frames]


def unpack_header(frames: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = _decoder.decode(bytes(frames[1]))
    return out


def unpack(cls: type[T], frames: Sequence[Any]) -> tuple[list[T], dict[str, Any]]:
    """Items of type ``cls`` and the header of a message made by :func:`pack`."""
    header = unpack_header(frames)
    arrays = frames[2:]
    items = []
    for head in header.pop("items"):
        kw: dict[str, Any] = {}
        for name, v in head.items():
            if isinstance(v, list) and len(v) == 4 and v[0] == "@":
                _, dtype, shape, idx = v
                kw[name] = np.frombuffer(arrays[idx], dtype=np.dtype(dtype)).reshape(shape)
            elif name in _ENUMS:
                kw[name] = _ENUMS[name](v)
            elif name == "lengths":
                kw[name] = tuple(v)
            else:
                kw[name] = v
        items.append(cls(**kw))
    return items, header
