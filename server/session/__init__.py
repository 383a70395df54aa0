"""seamcut.server.session: one object per stream between the transport and the engine.

Validates messages in protocol order, decodes audio to float32, downmixes, resamples
to the 16 kHz analysis rate, re-blocks onto a fixed grid that depends only on the
sample count (never on message sizes), carries the halo, bounds in-flight work, and
turns engine results into typed events with watermarks. Knows nothing of protobuf.
May import engine, dsp and the leaf modules config/errors/events.
"""
