"""seamcut.server.engine: the three-stage pipeline shared by all streams, behind one client.

S1 separation -> S2 Silero VAD batched across streams -> S3 band energy. The engine
is a pure function of plain request data (``protocol``): per-stream state (the
detector, overlap-add, resampling) lives in the session, which sees only the
``client.EngineClient`` interface: ``InprocEngine`` (stage threads in this process)
or ``mpclient.ProcessEngineClient`` (engine processes over ZeroMQ, ``process``).
May import models, dsp and the leaf modules config/errors/events; never session or
transport.
"""
