"""seamcut.bench: the load generator and report behind ``seamcut bench``.

N concurrent streams of looped audio (``source``) on asyncio, one event loop per
process (``load``; ``worker`` spreads streams over processes), paced at real time x
FACTOR or flooding; a ramp that adds streams until a limit is crossed (``ramp``);
client and server CPU/RSS (``sysmon``); in-process and Silero baselines
(``baseline``); server memory per idle stream (``idle``). What is measured, exactly:
the ``metrics`` module docstring. The JSON schema and its stable keys: ``report``.

Modules: ``config`` (options, defaults), ``stats`` (nearest-rank percentiles),
``metrics`` (the per-stream meter), ``recording`` (sample columns, windows),
``source``, ``load``, ``worker``, ``ramp``, ``sysmon``, ``localserver``
(``--server spawn``), ``runner`` (drives a run), ``baseline``, ``idle``, ``report``
(JSON), ``render`` (table, Markdown), ``plots`` (PNG), ``cli``. The SONG work's
``mdx_model`` (MDX-Net-shaped test models) and ``song_perf`` (SONG throughput against
bare ONNX Runtime) live here too and are documented in their own docstrings.

May import the SDK (``seamcut.client``), grpc, numpy, psutil and matplotlib (lazily,
for plots); ``seamcut.server`` only lazily in ``baseline`` (``--compare``), so the
bench runs against a remote server without the server's dependencies.
"""
