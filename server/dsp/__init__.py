"""seamcut.server.dsp: pure signal processing and the pause-detection state machine.

May import numpy and soxr, plus the leaf modules ``config``, ``events`` and
``errors``; nothing else of ours. Functions work on the trailing axis,
never mutate their inputs and keep no globals. Streaming is an explicit fold:
``state, events = detect_step(state, block)``; offline processing is the same fold
fed all the audio.
"""
