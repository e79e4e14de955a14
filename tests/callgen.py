"""Generate synthetic test calls from a script, with exact ground truth.

A *script* is a list of :class:`Utterance` objects: who speaks (``agent`` or ``customer``),
when (``start_s``, seconds from the call's first sample) and what (``text``).  Each utterance
is synthesised with ``espeak-ng`` (or taken from a real recording, see :class:`SpeechClip`),
resampled with ``sox`` to the call's sample rate, trimmed to its audible speech and placed on
its channel of a stereo 16-bit WAV (left = agent, right = customer), over optional low white
noise.  The result comes with a :class:`CallTruth`: the exact speech spans as placed, and the
dead-air and overtalk incidents a correct hub must report for them.

Typical use in a test::

    call = generate_call(STANDARD_CALL, 16000, tmp_path_factory.mktemp("calls"))
    for alert in call.truth.expected_alerts():
        ...  # stream call.wav through the hub, compare kinds and offsets

Generation is deterministic: the same script, parameters and tool versions give byte-identical
files (``sox`` runs with a fixed random seed and no dither; the noise uses a seeded generator).

espeak-ng 1.51 (Debian) pads its output with ~13 ms of silence before the speech (0 ms for
vowel-initial words, up to ~55 ms before a plosive such as "please", which is the stop's
closure) and ~350 ms after it; inside an utterance, commas add ~180 ms pauses, full stops
~350 ms and the words "and"/"but" a ~120 ms pause before them.  Leading and trailing silence is
trimmed away; internal pauses are kept and listed in :attr:`CallTruth.pauses` (keep them out
of stretches meant to be overtalk: a VAD may split the overlap there).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

Channel = Literal["agent", "customer"]
CHANNELS: tuple[Channel, Channel] = ("agent", "customer")
Span = tuple[float, float]

#: Bumped whenever the output for a given script changes; part of the cache key.
FORMAT_VERSION = 1

#: Amplitude (int16 units, about -60 dBFS) above which a synthetic sample counts as audible.
TTS_THRESHOLD = 33
#: Internal silences at least this long are reported in :attr:`CallTruth.pauses`.
MIN_PAUSE_S = 0.1
#: Fade applied at the cut edges of real recordings, to avoid clicks.
CLIP_FADE_S = 0.005

_TESTDATA_PACKAGE = "pocketsphinx-testdata"
_TESTDATA_TEXTS = {
    "goforward.raw": "go forward ten meters",
    "sense_and_sensibility_01_austen_64kb-0880.wav": "he was not an ill disposed young man",
    "sense_and_sensibility_01_austen_64kb-0930.wav": "he might even have been made amiable himself",
}


class ToolMissingError(RuntimeError):
    """Raised when espeak-ng or sox is not installed."""


@dataclass(frozen=True)
class SpeechClip:
    """A recording of real speech: 16-bit mono PCM, as WAV or headerless raw."""

    path: Path
    sample_rate: int
    text: str


@dataclass(frozen=True)
class Utterance:
    """One scripted utterance.

    ``text`` is synthesised with espeak-ng using ``voice`` and ``speed_wpm``, unless ``clip``
    is given, in which case the recording is used and ``text`` is only its transcript.
    """

    channel: Channel
    start_s: float
    text: str
    voice: str = "en-us"
    speed_wpm: int = 160
    clip: SpeechClip | None = None


@dataclass(frozen=True)
class Incident:
    """An expected dead-air (``silence``) or ``overtalk`` incident, in call audio time."""

    kind: Literal["silence", "overtalk"]
    offset_s: float
    duration_s: float
    interrupter: Channel | None = None
    interrupted: Channel | None = None


@dataclass
class CallTruth:
    """Ground truth of a generated call.

    ``spans`` holds, per channel, one ``(start_s, end_s)`` per utterance in script order, from
    its first to its last audible sample.  ``pauses`` holds, per channel, the silent gaps of at
    least :data:`MIN_PAUSE_S` *inside* those spans (sentence and comma pauses; synthesised
    utterances only).  ``dead_air``
    and ``overtalk`` are derived from ``spans`` with ``dead_air_s`` and ``overtalk_s``.
    """

    sample_rate: int
    duration_s: float
    spans: dict[str, list[Span]]
    pauses: dict[str, list[Span]]
    dead_air_s: float
    overtalk_s: float
    dead_air: list[Incident] = field(default_factory=list)
    overtalk: list[Incident] = field(default_factory=list)

    def expected_alerts(self) -> list[Incident]:
        """All expected incidents, ordered by offset."""
        return sorted(self.dead_air + self.overtalk, key=lambda i: (i.offset_s, i.kind))

    def incidents(self, dead_air_s: float, overtalk_s: float) -> list[Incident]:
        """Expected incidents for other thresholds, ordered by offset."""
        dead = find_dead_air(self.spans, self.duration_s, dead_air_s)
        over = find_overtalk(self.spans, overtalk_s)
        return sorted(dead + over, key=lambda i: (i.offset_s, i.kind))

    def to_json(self) -> str:
        """Serialise to JSON (see :meth:`from_json`)."""
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> CallTruth:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        spans = {ch: [(s, e) for s, e in v] for ch, v in raw["spans"].items()}
        pauses = {ch: [(s, e) for s, e in v] for ch, v in raw["pauses"].items()}
        return cls(
            sample_rate=raw["sample_rate"],
            duration_s=raw["duration_s"],
            spans=spans,
            pauses=pauses,
            dead_air_s=raw["dead_air_s"],
            overtalk_s=raw["overtalk_s"],
            dead_air=[Incident(**i) for i in raw["dead_air"]],
            overtalk=[Incident(**i) for i in raw["overtalk"]],
        )


@dataclass(frozen=True)
class GeneratedCall:
    """Files and truth of a call produced by :func:`generate_call`."""

    wav: Path
    transcript: Path
    truth: CallTruth


# --------------------------------------------------------------------------- tools


def missing_tools() -> list[str]:
    """Names of the external programs (espeak-ng, sox) that are not on PATH."""
    return [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]


@functools.lru_cache(maxsize=1)
def tool_versions() -> str:
    """Version lines of espeak-ng and sox (part of the cache key)."""
    _require_tools()
    espeak = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    sox = subprocess.run(["sox", "--version"], capture_output=True, text=True, check=True)
    return f"{espeak.stdout.strip()} | {sox.stdout.strip()}"


def _require_tools() -> None:
    missing = missing_tools()
    if missing:
        names = ", ".join(missing)
        raise ToolMissingError(f"missing programs: {names} (apt-get install espeak-ng sox)")


def _sox_to_raw(data: bytes, input_args: list[str], sample_rate: int) -> np.ndarray:
    """Convert audio bytes with sox to mono int16 at ``sample_rate`` (deterministic: -R, -D)."""
    cmd = ["sox", "-R", "-D", *input_args, "-",
           "-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1", "-L", "-",
           "rate", "-h", str(sample_rate)]
    out = subprocess.run(cmd, input=data, capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<i2").copy()


def _espeak_wav(text: str, voice: str, speed_wpm: int) -> bytes:
    """Raw espeak-ng output (a WAV stream at the voice's native rate, usually 22050 Hz)."""
    _require_tools()
    cmd = ["espeak-ng", "--stdin", "-v", voice, "-s", str(speed_wpm), "--stdout"]
    return subprocess.run(cmd, input=text.encode(), capture_output=True, check=True).stdout


# --------------------------------------------------------------------------- speech


def audible_bounds(samples: np.ndarray, threshold: float = TTS_THRESHOLD) -> tuple[int, int] | None:
    """Index of the first audible sample and one past the last, or None if all is silent."""
    loud = np.nonzero(np.abs(samples.astype(np.int32)) > threshold)[0]
    if loud.size == 0:
        return None
    return int(loud[0]), int(loud[-1]) + 1


def espeak_padding(text: str, voice: str = "en-us", speed_wpm: int = 160) -> tuple[float, float]:
    """Seconds of silence espeak-ng puts before and after ``text``, at its native rate."""
    data = _espeak_wav(text, voice, speed_wpm)
    native_rate = int.from_bytes(data[24:28], "little")
    samples = np.frombuffer(data[44:], dtype="<i2")
    bounds = audible_bounds(samples)
    if bounds is None:
        return len(samples) / native_rate, 0.0
    return bounds[0] / native_rate, (len(samples) - bounds[1]) / native_rate


@functools.lru_cache(maxsize=256)
def _synthesize_cached(text: str, voice: str, speed_wpm: int, sample_rate: int) -> bytes:
    wav = _espeak_wav(text, voice, speed_wpm)
    samples = _sox_to_raw(wav, ["-t", "wav"], sample_rate)
    bounds = audible_bounds(samples)
    if bounds is None:
        raise ValueError(f"espeak-ng produced no audible speech for {text!r}")
    return samples[bounds[0]:bounds[1]].tobytes()


def synthesize(text: str, voice: str, speed_wpm: int, sample_rate: int) -> np.ndarray:
    """Speech for ``text`` as int16 mono at ``sample_rate``, trimmed to its audible part."""
    return np.frombuffer(_synthesize_cached(text, voice, speed_wpm, sample_rate), dtype="<i2")


def speech_clip_from_testdata(name: str = "goforward.raw") -> SpeechClip | None:
    """A real human speech clip from Debian's pocketsphinx-testdata, or None if not installed.

    ``name`` is one of ``goforward.raw`` ("go forward ten meters", male, 2.8 s) and two
    LibriVox clips (see ``_TESTDATA_TEXTS``); all are 16 kHz 16-bit mono.
    """
    if name not in _TESTDATA_TEXTS:
        raise ValueError(f"unknown clip {name!r}; known: {sorted(_TESTDATA_TEXTS)}")
    for path in _testdata_files():
        if path.name == name and path.is_file():
            return SpeechClip(path=path, sample_rate=16000, text=_TESTDATA_TEXTS[name])
    return None


@functools.lru_cache(maxsize=1)
def _testdata_files() -> tuple[Path, ...]:
    """Files of the pocketsphinx-testdata package, via dpkg (empty if unavailable)."""
    if shutil.which("dpkg") is None:
        return ()
    listing = subprocess.run(["dpkg", "-L", _TESTDATA_PACKAGE], capture_output=True, text=True)
    if listing.returncode != 0:
        return ()
    lines = listing.stdout.splitlines()
    return tuple(Path(line) for line in lines if line.endswith((".raw", ".wav")))


def load_clip(clip: SpeechClip, sample_rate: int) -> np.ndarray:
    """The clip as int16 mono at ``sample_rate``: DC removed, trimmed to speech, edges faded."""
    raw = _read_clip_samples(clip)
    if clip.sample_rate != sample_rate:
        raw_args = ["-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1", "-L",
                    "-r", str(clip.sample_rate)]
        raw = _sox_to_raw(raw.tobytes(), raw_args, sample_rate)
    start, end = _speech_bounds_by_energy(raw, sample_rate)
    return _fade_edges(raw[start:end], int(CLIP_FADE_S * sample_rate))


def _read_clip_samples(clip: SpeechClip) -> np.ndarray:
    if clip.path.suffix == ".wav":
        samples, _ = _read_mono_wav(clip.path)
    else:
        samples = np.fromfile(clip.path, dtype="<i2")
    centred = samples.astype(np.float64) - samples.mean()
    return np.clip(np.round(centred), -32768, 32767).astype(np.int16)


def _read_mono_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data[:: w.getnchannels()], w.getframerate()


def _speech_bounds_by_energy(samples: np.ndarray, sample_rate: int) -> tuple[int, int]:
    """Speech bounds of a noisy recording: 10 ms frames 15 dB over the noise floor."""
    frame = sample_rate // 100
    n_frames = len(samples) // frame
    frames = samples[: n_frames * frame].astype(np.float64).reshape(n_frames, frame)
    level_db = 10 * np.log10((frames**2).mean(axis=1) + 1e-9)
    floor_db = np.percentile(level_db, 10)
    threshold_db = max(floor_db + 15.0, level_db.max() - 40.0)
    loud = np.nonzero(level_db > threshold_db)[0]
    if loud.size == 0:
        raise ValueError("no speech found in the clip")
    return int(loud[0]) * frame, (int(loud[-1]) + 1) * frame


def _fade_edges(samples: np.ndarray, n: int) -> np.ndarray:
    out = samples.astype(np.float64)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))
    out[:n] *= ramp
    out[len(out) - n:] *= ramp[::-1]
    return np.round(out).astype(np.int16)


def _utterance_audio(utt: Utterance, sample_rate: int) -> np.ndarray:
    if utt.clip is not None:
        return load_clip(utt.clip, sample_rate)
    return synthesize(utt.text, utt.voice, utt.speed_wpm, sample_rate)


def _internal_pauses(
    samples: np.ndarray, sample_rate: int, min_pause_s: float
) -> list[tuple[int, int]]:
    """Silent runs (10 ms frames below the audibility threshold) of at least ``min_pause_s``."""
    frame = sample_rate // 100
    n_frames = len(samples) // frame
    frames = samples[: n_frames * frame].astype(np.float64).reshape(n_frames, frame)
    quiet = np.sqrt((frames**2).mean(axis=1)) < TTS_THRESHOLD
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for i, q in enumerate([*quiet.tolist(), False]):
        if q and start is None:
            start = i
        elif not q and start is not None:
            if (i - start) * frame >= min_pause_s * sample_rate:
                runs.append((start * frame, i * frame))
            start = None
    return runs


# --------------------------------------------------------------------------- truth


def _merge(spans: list[Span]) -> list[Span]:
    """Union of spans as sorted, disjoint spans."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def find_dead_air(
    spans: dict[str, list[Span]], duration_s: float, dead_air_s: float
) -> list[Incident]:
    """Gaps of at least ``dead_air_s`` where no channel speaks, from call start to call end."""
    speech = _merge([s for ch in CHANNELS for s in spans.get(ch, [])])
    edges = [0.0] + [x for s in speech for x in s] + [duration_s]
    found = []
    for gap_start, gap_end in zip(edges[0::2], edges[1::2], strict=True):
        if gap_end - gap_start >= dead_air_s - 1e-9:
            found.append(Incident("silence", gap_start, gap_end - gap_start))
    return found


def find_overtalk(spans: dict[str, list[Span]], overtalk_s: float) -> list[Incident]:
    """Stretches of at least ``overtalk_s`` where both channels speak.

    The interrupter is the channel whose (merged) span started later; None on an exact tie.
    """
    agent = _merge(spans.get("agent", []))
    customer = _merge(spans.get("customer", []))
    found = []
    for a_start, a_end in agent:
        for c_start, c_end in customer:
            start, end = max(a_start, c_start), min(a_end, c_end)
            if end - start < overtalk_s - 1e-9:
                continue
            interrupter, interrupted = _who_cut_in(a_start, c_start)
            found.append(Incident("overtalk", start, end - start, interrupter, interrupted))
    return sorted(found, key=lambda i: i.offset_s)


def _who_cut_in(agent_start: float, customer_start: float) -> tuple[Channel | None, Channel | None]:
    if agent_start > customer_start:
        return "agent", "customer"
    if customer_start > agent_start:
        return "customer", "agent"
    return None, None


# --------------------------------------------------------------------------- building


def build_call(
    script: list[Utterance],
    sample_rate: int,
    out_wav: Path,
    out_transcript: Path | None,
    *,
    noise_dbfs: float | None = -65,
    tail_s: float = 1.0,
    dead_air_s: float = 5.0,
    overtalk_s: float = 1.0,
    seed: int = 0,
) -> CallTruth:
    """Render ``script`` to a stereo 16-bit WAV (left agent, right customer) and its truth.

    Each utterance's first audible sample lands at ``round(start_s * sample_rate)``.  The call
    lasts until the last speech ends plus ``tail_s``.  ``noise_dbfs`` is the RMS level of
    independent white noise added to each channel (None for digital silence).  The transcript,
    if asked for, is JSON lines ``{"offset_s", "speaker", "text"}`` ordered by offset.
    """
    if sample_rate not in (8000, 16000):
        raise ValueError("sample_rate must be 8000 or 16000")
    placed = [_place(utt, sample_rate) for utt in script]
    n_samples = max((p.end for p in placed), default=0) + round(tail_s * sample_rate)
    mix = np.zeros((n_samples, 2), dtype=np.float64)
    for p in placed:
        mix[p.start:p.end, CHANNELS.index(p.utterance.channel)] += p.audio
    if noise_dbfs is not None:
        mix += _noise(n_samples, noise_dbfs, seed)
    _write_stereo_wav(out_wav, mix, sample_rate)
    if out_transcript is not None:
        _write_transcript(out_transcript, placed, sample_rate)
    return _truth(placed, sample_rate, n_samples / sample_rate, dead_air_s, overtalk_s)


@dataclass(frozen=True)
class _Placed:
    utterance: Utterance
    audio: np.ndarray
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.audio)


def _place(utt: Utterance, sample_rate: int) -> _Placed:
    if utt.start_s < 0:
        raise ValueError(f"negative start_s in {utt}")
    if utt.channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}: {utt}")
    return _Placed(utt, _utterance_audio(utt, sample_rate), round(utt.start_s * sample_rate))


def _noise(n_samples: int, noise_dbfs: float, seed: int) -> np.ndarray:
    rms = 32768.0 * 10 ** (noise_dbfs / 20)
    return np.random.default_rng(seed).standard_normal((n_samples, 2)) * rms


def _write_stereo_wav(path: Path, mix: np.ndarray, sample_rate: int) -> None:
    pcm = np.clip(np.round(mix), -32768, 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def _write_transcript(path: Path, placed: list[_Placed], sample_rate: int) -> None:
    lines = [
        json.dumps({"offset_s": round(p.start / sample_rate, 3),
                    "speaker": p.utterance.channel, "text": p.utterance.text})
        for p in sorted(placed, key=lambda p: (p.start, p.utterance.channel))
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def _truth(placed: list[_Placed], sample_rate: int, duration_s: float,
           dead_air_s: float, overtalk_s: float) -> CallTruth:
    spans: dict[str, list[Span]] = {ch: [] for ch in CHANNELS}
    pauses: dict[str, list[Span]] = {ch: [] for ch in CHANNELS}
    for p in placed:
        ch = p.utterance.channel
        spans[ch].append((p.start / sample_rate, p.end / sample_rate))
        if p.utterance.clip is not None:
            continue  # a recording's background noise hides its pauses from this measure
        for s, e in _internal_pauses(p.audio, sample_rate, MIN_PAUSE_S):
            pauses[ch].append(((p.start + s) / sample_rate, (p.start + e) / sample_rate))
    return CallTruth(
        sample_rate=sample_rate,
        duration_s=duration_s,
        spans=spans,
        pauses=pauses,
        dead_air_s=dead_air_s,
        overtalk_s=overtalk_s,
        dead_air=find_dead_air(spans, duration_s, dead_air_s),
        overtalk=find_overtalk(spans, overtalk_s),
    )


def generate_call(
    script: list[Utterance],
    sample_rate: int,
    cache_dir: Path,
    *,
    noise_dbfs: float | None = -65,
    tail_s: float = 1.0,
    dead_air_s: float = 5.0,
    overtalk_s: float = 1.0,
    seed: int = 0,
) -> GeneratedCall:
    """Like :func:`build_call`, but named by content under ``cache_dir`` and reused if present."""
    params = {"noise_dbfs": noise_dbfs, "tail_s": tail_s, "dead_air_s": dead_air_s,
              "overtalk_s": overtalk_s, "seed": seed}
    key = _cache_key(script, sample_rate, params)
    stem = cache_dir / f"call-{sample_rate}-{key}"
    wav, transcript, truth_path = (stem.with_suffix(s) for s in (".wav", ".jsonl", ".truth.json"))
    if not truth_path.exists():
        tmp = stem.with_name(f"{stem.name}.{os.getpid()}.tmp")
        tmp_wav, tmp_tr = tmp.with_suffix(".wav"), tmp.with_suffix(".jsonl")
        truth = build_call(script, sample_rate, tmp_wav, tmp_tr, **params)
        os.replace(tmp_wav, wav)
        os.replace(tmp_tr, transcript)
        tmp_truth = tmp.with_suffix(".truth.json")
        tmp_truth.write_text(truth.to_json())
        os.replace(tmp_truth, truth_path)
    return GeneratedCall(wav, transcript, CallTruth.from_json(truth_path.read_text()))


def _cache_key(script: list[Utterance], sample_rate: int, params: dict[str, object]) -> str:
    blob = json.dumps(
        [FORMAT_VERSION, tool_versions(), sample_rate, params, [asdict(u) for u in script]],
        default=str, sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- reading back


def read_stereo_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples of a stereo 16-bit WAV as an int16 array of shape (n, 2), and the rate."""
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 2 or w.getsampwidth() != 2:
            raise ValueError(f"{path} is not stereo 16-bit")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.reshape(-1, 2), w.getframerate()


def vad_decisions(wav: Path, aggressiveness: int = 3, frame_ms: int = 20) -> dict[str, np.ndarray]:
    """webrtcvad's speech/non-speech decision per ``frame_ms`` frame, per channel."""
    import webrtcvad

    samples, rate = read_stereo_wav(wav)
    frame = rate * frame_ms // 1000
    decisions = {}
    for index, ch in enumerate(CHANNELS):
        vad = webrtcvad.Vad(aggressiveness)
        mono = np.ascontiguousarray(samples[:, index])
        decisions[ch] = np.array([vad.is_speech(mono[i * frame:(i + 1) * frame].tobytes(), rate)
                                  for i in range(len(mono) // frame)], dtype=bool)
    return decisions


@dataclass(frozen=True)
class VadReport:
    """webrtcvad's view of a generated call, per channel.

    ``speech_fractions``: per utterance (in span order), the share of its frames judged speech.
    ``voiced_fractions``: the same, leaving out frames inside the utterance's internal pauses.
    ``noise_fraction``: the share of frames judged speech among frames where the channel has
    no speech, leaving out the call's first ``guard_s`` and ``guard_s`` after each span
    (webrtcvad's start-up and hangover); ``noise_frames`` is how many such frames there were.
    """

    speech_fractions: dict[str, list[float]]
    voiced_fractions: dict[str, list[float]]
    noise_fraction: float
    noise_frames: int


def vad_report(wav: Path, truth: CallTruth, aggressiveness: int = 3, frame_ms: int = 20,
               guard_s: float = 0.3) -> VadReport:
    """Run webrtcvad over each channel of ``wav`` and compare with ``truth``."""
    decisions = vad_decisions(wav, aggressiveness, frame_ms)
    step = frame_ms / 1000
    speech: dict[str, list[float]] = {}
    voiced: dict[str, list[float]] = {}
    noise_hits = noise_total = 0
    for ch in CHANNELS:
        dec = decisions[ch]
        centres = (np.arange(len(dec)) + 0.5) * step
        in_pause = _within(centres, truth.pauses[ch])
        speech[ch] = [float(dec[_within(centres, [span])].mean()) for span in truth.spans[ch]]
        voiced[ch] = [float(dec[_within(centres, [span]) & ~in_pause].mean())
                      for span in truth.spans[ch]]
        guarded = [(s - step, e + guard_s) for s, e in truth.spans[ch]] + [(0.0, guard_s)]
        quiet = ~_within(centres, guarded)
        noise_hits += int(dec[quiet].sum())
        noise_total += int(quiet.sum())
    return VadReport(speech, voiced, noise_hits / max(noise_total, 1), noise_total)


def _within(times: np.ndarray, spans: list[Span]) -> np.ndarray:
    """Mask of ``times`` falling inside any of ``spans``."""
    mask = np.zeros(len(times), dtype=bool)
    for start, end in spans:
        mask |= (times >= start) & (times < end)
    return mask


# --------------------------------------------------------------------------- standard call

AGENT_VOICE = "en-us"
CUSTOMER_VOICE = "en-gb"


def _agent(start_s: float, text: str) -> Utterance:
    return Utterance("agent", start_s, text, AGENT_VOICE)


def _customer(start_s: float, text: str, speed_wpm: int = 160) -> Utterance:
    return Utterance("customer", start_s, text, CUSTOMER_VOICE, speed_wpm)


STANDARD_CALL: list[Utterance] = [
    _agent(0.5, "Northwind Investments, Alex speaking. How can I help?"),
    _customer(4.9, "Hi. I want to put my savings into one of your funds."),
    _agent(8.9, "Sure, let me pull up your account."),
    # ~7 s of dead air while the agent "looks up the account".
    _agent(18.1, "Thanks for waiting. Our Global Growth fund is very popular and this fund has "
                 "guaranteed returns over any five year period"),
    # The customer cuts in ~2 s before the agent finishes (no pause in either overlapping part).
    _customer(23.65, "Hold on what does that mean for my retirement savings exactly"),
    _agent(27.8, "It means your money keeps growing every single year."),
    # A ~0.3 s back-channel inside the agent's turn: overlap, but far below overtalk_s.
    _customer(28.8, "yeah", speed_wpm=180),
    _customer(31.2, "My brother lost a lot of money in a fund like that and I really do not want "
                    "that to happen to me"),
    # The agent cuts in ~1.5 s before the customer finishes.
    _agent(34.74, "Let me stop you there for a moment while I confirm your identity. "
                  "Please read me the verification code."),
    _customer(41.3, "It says four seven one nine two."),
    # ~6 s of dead air while the agent "checks the code".
    _agent(49.3, "Thank you for waiting. The code is confirmed. Thanks for calling Northwind."),
    _customer(54.7, "Great, thanks. Goodbye."),
]
"""A ~58 s sales call with known incidents (agent en-us, customer en-gb, 160 wpm).

Expected alerts for dead_air_s=5, overtalk_s=1, as computed by :func:`build_call` with
espeak-ng 1.51 at 16 kHz (8 kHz differs by at most 2 ms; always assert against the returned
:class:`CallTruth`, since span ends depend on the espeak-ng version)::

    kind      offset_s  duration_s  who cut in
    silence     11.073       7.027  -
    overtalk    23.650       2.002  customer cuts in on agent
    overtalk    34.740       1.504  agent cuts in on customer
    silence     43.324       5.976  -

Not an alert: the customer's back-channel "yeah" at 28.800 overlaps the agent for 0.285 s.
Overtalk offsets are scripted start times and do not depend on the espeak-ng version.
Keyword lines (transcript, speaker agent): 18.10 "... this fund has guaranteed returns ..."
and 34.74 "... Please read me the verification code."  The call lasts 57.69 s.

Seen through webrtcvad (aggressiveness 3, 20 ms frames, gaps up to 0.1 s bridged) the same
four incidents appear at 11.14, 23.66, 34.74 and 43.44 s.
"""
