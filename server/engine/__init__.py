"""seamcut.server.engine: the three-stage pipeline shared by all streams.

S1 separation (skipped for streams without a separator) -> S2 Silero VAD batched
across streams -> S3 features, pause detection and cut refinement. Each stage is a
worker thread with a queue (ONNX Runtime and numpy release the GIL, so stages overlap
across blocks); per stream, blocks stay in order. May import models, dsp and the leaf
modules config/errors/events; never session or transport.
"""
