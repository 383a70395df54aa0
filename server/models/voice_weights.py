"""Where SONG mode's voice detector weights ship (server/dsp/voice.py reads them)."""

from __future__ import annotations

from pathlib import Path

# An ensemble of three small GRUs, trained by scripts/voice_gru.py on songs the project
# generates; part of the package, so nothing is downloaded.
PATH = Path(__file__).resolve().parent / "voice_gru.npz"
