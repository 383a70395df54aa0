"""seamcut.server: the gRPC streaming server.

Layers, imports pointing one way only (tests/test_layering.py enforces it)::

    transport  grpc.aio servicer, proto <-> domain, status table, health (only protobuf user)
      -> session   per-stream validation, decoding, re-blocking, watermarks
        -> engine    three-stage pipeline, cross-stream batching, device
          -> models    Silero VAD, separators (weights and sessions only, no stream state)
          -> dsp       pure numpy functions and the pause-detection state machine

``config``, ``errors`` and ``events`` are leaves that every layer may import.
"""
