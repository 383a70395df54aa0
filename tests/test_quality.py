"""Cut quality on the espeak-ng corpus: no cut inside a word, every pause >= 0.5 s cut."""

from __future__ import annotations

import pytest
from seamcut.server.config import AppConfig, Encoding
from seamcut.server.engine.client import InprocEngine
from seamcut.server.events import Cut, CutKind
from seamcut.server.offline import analyze

from tests.corpus import SpeechClip, default_corpus
from tests.helpers import encode, slice_bytes, speech_spec

pytestmark = pytest.mark.integration
CLIPS = default_corpus()


def cuts_for(clip: SpeechClip, cfg: AppConfig, engine: InprocEngine, **policy: int) -> list[Cut]:
    spec = speech_spec(cfg, clip.sample_rate_hz, clip.channels, Encoding.PCM_S16LE, **policy)
    data = encode(clip.audio, Encoding.PCM_S16LE)
    chunks = slice_bytes(data, 2 * clip.channels, [clip.sample_rate_hz // 10])
    return [e for e in analyze(cfg, spec, chunks, engine) if isinstance(e, Cut)]


def check_clip(clip: SpeechClip, cuts: list[Cut]) -> tuple[list[int], list[tuple[int, int]]]:
    inner = [c.sample for c in cuts if c.kind is not CutKind.END]
    in_words = [s for s in inner if any(a < s < b for a, b in clip.speech)]
    missed = [
        (a, b) for a, b in clip.pauses
        if (b - a) >= 0.5 * clip.sample_rate_hz and not any(a <= s <= b for s in inner)
    ]
    return in_words, missed


@pytest.mark.parametrize("clip", CLIPS, ids=[c.name for c in CLIPS])
def test_no_cut_in_words_and_every_long_pause_cut(
    clip: SpeechClip, app_cfg: AppConfig, engine: InprocEngine
) -> None:
    cuts = cuts_for(clip, app_cfg, engine)
    in_words, missed = check_clip(clip, cuts)
    assert in_words == [], f"cuts inside words at samples {in_words}"
    assert missed == [], f"pauses >= 0.5 s without a cut: {missed}"
    assert cuts[-1].kind is CutKind.END and cuts[-1].sample == clip.frames


def test_checker_catches_bad_cuts() -> None:
    """The quality check itself must fail on cuts in words and on missed pauses."""
    clip = CLIPS[0]
    a, b = clip.speech[1]
    word_cut = Cut(sample=(a + b) // 2, seconds=0.0, kind=CutKind.PAUSE, score=1.0,
                   pause_start_sample=0, pause_end_sample=0, index=0)
    in_words, missed = check_clip(clip, [word_cut])
    assert in_words == [word_cut.sample]
    long_pauses = [p for p in clip.pauses if p[1] - p[0] >= 0.5 * clip.sample_rate_hz]
    assert missed == long_pauses and long_pauses
