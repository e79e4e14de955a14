"""Narrowband channel adaptation of the bundled acoustic model (MLLR), for 8 kHz calls.

    .venv/bin/python -m bench.kws_adapt          # writes server/analysis/models/en-us-8k.mllr
    .venv/bin/python -m bench.kws_adapt --check  # held-out real speech: scores with/without

The CMU Sphinx recipe "adapting the default acoustic model", with the hub's own audio path: an
adaptation corpus is spoken at 8 kHz (espeak-ng, several voices, speeds and line noise, plus the
real recordings of Debian's pocketsphinx-testdata that have transcripts), upsampled to 16 kHz by
the hub's `Upsampler2x`, turned into cepstra by `sphinx_fe` with the model's own front-end
parameters, aligned to the bundled model by `bw` (Baum-Welch counts) and summarised by
`mllr_solve` as one affine transform of the model's Gaussian means: a few KB of text that the
8 kHz decoders load (`-mllr`). 16 kHz decoders do not.

The corpus shares nothing with bench/kws_accuracy.py's test material: other sentences (checked
below: none of its sentences, none of the spotted phrases), other espeak-ng voices (en-gb,
en-us+m3, en-us+f2 and the default en-us stay unseen, so the bench measures a transform that
never heard its voices) and only some of the real recordings
(`goforward.raw` and two LibriVox clips are held out for `--check`).

Needs Debian's sphinxtrain (`bw`, `mllr_solve` in /usr/lib/sphinxtrain), sphinxbase-utils
(`sphinx_fe`) and pocketsphinx (`pocketsphinx_mdef_convert`); the hub itself needs none of them.
The bundled model ships its mixture weights only as a compressed `sendump`; they are expanded
to the `mixture_weights` file bw reads (8-bit quantised log-probabilities, good enough to align).
"""

from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from callgen import STANDARD_CALL, SpeechClip, load_clip, synthesize

from bench.kws_accuracy import CARRIERS, NEGATIVE, TESTDATA
from server.analysis.kws import (
    MLLR_FILES,
    Keyphrase,
    KeywordSpotter,
    Lexicon,
    SpotterParams,
    Upsampler2x,
    keyphrases_from_packs,
    spoken_form,
)

SPHINXTRAIN = Path("/usr/lib/sphinxtrain")
OUT = MLLR_FILES[8000]

#: Adaptation sentences: everyday and call-centre English with broad phonetic coverage, none of
#: the bench's sentences and none of the spotted phrases (checked in `check_disjoint`).
SENTENCES = (
    "Good morning, you are through to the customer service desk.",
    "Could I take your full name and the zip code of the property?",
    "The weather in the north will be cloudy with a chance of rain.",
    "She sold her old bicycle to a neighbour for twenty dollars.",
    "We usually ship large items on a pallet by road.",
    "The quick brown fox jumps over the lazy dog.",
    "A judge heard the case in the morning and gave a verdict at noon.",
    "Please wait while I look at the notes from your previous call.",
    "My brother works in a hospital near the river.",
    "The children were playing football in the garden until dark.",
    "Which day of the week would be easiest for the visit?",
    "The television stopped working after the storm last night.",
    "I think the shop on the corner closes at half past five.",
    "He measured the window twice before ordering the glass.",
    "You will find the settings under the menu at the top of the screen.",
    "Our office moved to a bigger building in the city centre.",
    "The train to Leeds was delayed by almost an hour.",
    "Thank you for waiting, I have the details in front of me now.",
    "The boiler needs a yearly check to keep the warranty valid.",
    "We were told the parcel was left with a neighbour.",
    "It usually takes about a week for the paperwork to arrive.",
    "Shall I read the address back to you to be sure?",
    "The chef added garlic, pepper and a little lemon juice.",
    "Fresh vegetables are delivered to the kitchen every Monday.",
    "The library lends books, music and films for free.",
    "Could you hold on for a second while I ask my supervisor?",
    "Seven hundred people attended the concert in the park.",
    "The meeting has been moved from Wednesday to Thursday.",
    "I have written down everything you told me.",
    "Most of our customers pay by direct debit each month.",
    "The doctor said the test results would take a few days.",
    "A thick fog covered the valley early this morning.",
    "The airline lost my suitcase on the way back from Spain.",
    "Please switch the router off and on again and wait two minutes.",
    "The playground was closed for repairs during the summer.",
    "Sorry about the noise, they are fixing the road outside.",
    "Her grandmother grew roses, tulips and sweet peas.",
    "The invoice was sent to the wrong email address.",
    "We can send an engineer between eight and twelve.",
    "The museum opens at ten and the entry is free for children.",
    "I would like to change the delivery address on my order.",
    "There was a long queue at the post office this morning.",
    "The system will ask you to choose a new username.",
    "Our records show a missed payment in October.",
    "The bakery on the high street sells warm bread all day.",
    "I am calling about the letter we received yesterday.",
    "The river flooded the fields after a week of heavy rain.",
    "Could you tell me the make and model of the washing machine?",
    "The plumber fixed the leak under the kitchen sink.",
    "I will put you through to the right department.",
    "He forgot his umbrella on the bus again.",
    "The garage will need the car for the whole day.",
    "A small dog barked at the postman every morning.",
    "The bill for June looks higher than usual.",
    "Each room has a desk, a lamp and a wardrobe.",
    "The school holidays start in the middle of July.",
    "We are sorry that the engineer did not arrive on time.",
    "Can you describe the sound the machine makes?",
    "The mountains were covered in snow until April.",
    "Just to confirm, the appointment is on the ninth.",
    "The judge thanked the jury for their careful work.",
    "Our van will collect the old fridge when the new one is delivered.",
    "My daughter is learning to play the violin.",
    "The hotel room had a view of the harbour.",
    "The screen shows a blue light and then goes black.",
    "They painted the fence green and the door yellow.",
    "We can talk about the options once the survey is done.",
    "The cheque should clear in three working days.",
    "The cat slept on the warm window ledge all afternoon.",
    "I will add a note so nobody calls you during work hours.",
    "Both of the printers in the office ran out of ink.",
    "The orchestra rehearsed the symphony for a month.",
    "Is the meter inside the house or in the garage?",
    "The footpath runs along the canal to the old mill.",
    "You should hear from the team within forty eight hours.",
    "The engine made a strange noise on the highway.",
    "Would you prefer a text message or a phone call?",
    "The farmer sold eggs, milk and cheese at the market.",
    "I can hear you clearly now, thank you.",
    "The new timetable starts on the first of September.",
)

#: espeak-ng voices of the corpus: none of the bench's (en-us, en-gb, en-us+m3, en-us+f2), so
#: its figures for every voice are for a voice the transform never heard. (With en-us added,
#: held-out en-us recall was the same, 0.92: what is learnt is the channel, not the voice.)
VOICES = ("en-us+m1", "en-us+m2", "en-us+f1", "en-us+f3", "en-us-nyc", "en-029")
SPEEDS = (140, 160, 185)
NOISE_DBFS = (-65.0, -50.0, -40.0)
PER_SENTENCE = 3  # voices per sentence (rotating through VOICES, SPEEDS, NOISE_DBFS)

#: Real recordings with transcripts used for adaptation; the others are held out (`--check`).
REAL_ADAPT = ("cards/cards.transcription", "librivox/transcription")
REAL_HELD_OUT = ("goforward.raw", "sense_and_sensibility_01_austen_64kb-0880.wav",
                 "sense_and_sensibility_01_austen_64kb-0930.wav")
#: Held-out real speech and a phrase of 3+ syllables each says, for `--check`.
CHECK_PHRASES = (
    ("goforward.raw", "go forward ten meters"),
    ("sense_and_sensibility_01_austen_64kb-0880.wav", "ill disposed young man"),
    ("sense_and_sensibility_01_austen_64kb-0930.wav", "made amiable himself"),
)
PAD_S = 0.25  # line noise before and after each utterance


def check_disjoint() -> None:
    """The corpus shares no sentence and no spotted phrase with the accuracy bench."""
    bench = {s.lower() for s in NEGATIVE} | {u.text.lower() for u in STANDARD_CALL}
    phrases = [k.text for k in keyphrases_from_packs(["builtin:en-core", "builtin:mandatory"])]
    for s in SENTENCES:
        words = f" {_words(s)} "
        assert s.lower() not in bench, s
        assert not any(f" {p} " in words for p in phrases), s
        assert not any(c.split("{p}")[0].strip(" ,").lower() in s.lower()
                       for c in CARRIERS if c.split("{p}")[0].strip(" ,")), s


def _words(text: str) -> str:
    return spoken_form(text.replace("-", " ")) or ""


def corpus(voices: tuple[str, ...] = VOICES, sentences: int | None = None,
           real: bool = True) -> list[tuple[str, np.ndarray, str]]:
    """(utterance id, 8 kHz int16 audio with line noise, transcript)."""
    rng = np.random.default_rng(8000)
    out = []
    for i, text in enumerate(SENTENCES[:sentences]):
        for j in range(PER_SENTENCE):
            voice = voices[(PER_SENTENCE * i + j) % len(voices)]
            speed = SPEEDS[(i + j) % len(SPEEDS)]
            noise = NOISE_DBFS[(i + 2 * j) % len(NOISE_DBFS)]
            pcm = synthesize(text, voice, speed, 8000)
            out.append((f"tts{i:03d}_{j}", _line(pcm, noise, rng), _words(text)))
    for listing in REAL_ADAPT if real else ():
        for line in (TESTDATA / listing).read_text().splitlines():
            m = re.match(r"<s>(.*)</s>\s*\((\S+)\)", line.strip())
            if not m:
                continue
            name = next(p for p in (TESTDATA / listing).parent.iterdir() if p.stem.endswith(m[2])
                        and p.suffix in (".wav", ".raw"))
            if name.name in REAL_HELD_OUT:
                continue
            pcm = load_clip(SpeechClip(name, 16000, ""), 8000)  # sox: band-limited to 4 kHz
            out.append((f"real_{name.stem[-4:]}", _line(pcm, -65.0, rng), " ".join(m[1].split())))
    return out


def _line(pcm: np.ndarray, noise_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    pad = np.zeros(int(PAD_S * 8000), dtype=np.float32)
    x = np.concatenate((pad, pcm.astype(np.float32), pad))
    x += rng.standard_normal(len(x)).astype(np.float32) * 32768 * 10 ** (noise_dbfs / 20)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def upsample(pcm: np.ndarray) -> np.ndarray:
    """The hub's 8 -> 16 kHz path, aligned (the FIR's delay flushed and cut)."""
    up = Upsampler2x().process(np.concatenate((pcm, np.zeros(Upsampler2x.DELAY, np.int16))))
    return up[2 * Upsampler2x.DELAY:]


# -- the model, as bw reads it ------------------------------------------------------------------


def prepare_model(model: Path, work: Path) -> Path:
    """A copy of the bundled model with a text mdef and mixture_weights from its sendump."""
    out = work / "model"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("means", "variances", "transition_matrices", "noisedict", "feat.params"):
        shutil.copy(model / name, out / name)
    subprocess.run(["pocketsphinx_mdef_convert", "-text", str(model / "mdef"),
                    str(out / "mdef.txt")], check=True, capture_output=True)
    write_s3(out / "mixture_weights", sendump_mixw(model / "sendump"))
    return out


def sendump_mixw(path: Path) -> np.ndarray:
    """Mixture weights (senones, streams, codewords) from pocketsphinx's quantised sendump:
    one byte per weight, the negated log (base 1.0001) shifted down by 10 bits."""
    data = path.read_bytes()
    pos, header = 0, {}
    while True:
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if n == 0:
            break
        key, _, value = data[pos : pos + n - 1].decode().partition(" ")
        header[key] = value
        pos += n
    if int(header.get("cluster_count", "0")) != 0:
        raise ValueError("clustered sendump is not supported")
    codewords, senones = struct.unpack_from("<II", data, pos)
    streams = int(header.get("feature_count", "1"))
    q = np.frombuffer(data, np.uint8, streams * codewords * senones, pos + 8)
    q = q.reshape(streams, codewords, senones).transpose(2, 0, 1).astype(np.float64)
    mixw = np.power(1.0001, -(q * 1024))
    return mixw / mixw.sum(axis=2, keepdims=True)


def write_s3(path: Path, array: np.ndarray) -> None:
    """A Sphinx-III binary parameter file (no checksum), as sphinxtrain's s3file writes it."""
    with path.open("wb") as f:
        head = b"s3\nversion 1.0\n"
        pad = (4 - (len(head) + len(b"endhdr\n")) % 4) % 4
        f.write(head + b" " * pad + b"endhdr\n" + struct.pack("<i", 0x11223344))
        f.write(struct.pack(f"<{array.ndim + 1}I", *array.shape, array.size))
        f.write(array.astype("<f4").tobytes())


# -- the recipe ---------------------------------------------------------------------------------


def adapt(work: Path, out: Path, passes: int = 1, voices: tuple[str, ...] = VOICES,
          sentences: int | None = None, real: bool = True) -> None:
    """Write the transform to `out`; `sentences`/`real` cut the corpus down (tests only)."""
    from pocketsphinx import get_model_path

    missing = [t for t in ("bw", "mllr_solve") if not (SPHINXTRAIN / t).is_file()]
    missing += [t for t in ("sphinx_fe", "pocketsphinx_mdef_convert") if not shutil.which(t)]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: apt-get install sphinxtrain "
                         "sphinxbase-utils pocketsphinx")
    check_disjoint()
    model = prepare_model(Path(get_model_path("en-us/en-us")), work)
    raw, mfc = work / "raw", work / "mfc"
    raw.mkdir(exist_ok=True)
    mfc.mkdir(exist_ok=True)
    items = corpus(voices, sentences, real)
    lexicon = Lexicon.default()
    words = sorted({w for _, _, t in items for w in t.split()})
    missing = [w for w in words if lexicon.pron(w) is None]
    if missing:
        raise SystemExit(f"not in the dictionary: {missing}")
    (work / "adapt.dict").write_text(lexicon.entries(words), encoding="ascii")
    seconds = 0.0
    for uid, pcm, _ in items:
        (raw / f"{uid}.raw").write_bytes(upsample(pcm).astype("<i2").tobytes())
        seconds += len(pcm) / 8000
    (work / "adapt.fileids").write_text("".join(f"{u}\n" for u, _, _ in items))
    (work / "adapt.transcription").write_text(
        "".join(f"<s> {t} </s> ({u})\n" for u, _, t in items))
    print(f"corpus: {len(items)} utterances, {seconds / 60:.1f} min of 8 kHz speech",
          file=sys.stderr)

    fe = feat_params(model / "feat.params")
    run(["sphinx_fe", *fe["fe"], "-samprate", "16000", "-dither", "no", "-remove_silence", "no",
         "-raw", "yes", "-input_endian", "little", "-c", str(work / "adapt.fileids"),
         "-di", str(raw), "-ei", "raw", "-do", str(mfc), "-eo", "mfc"])
    for n in range(passes):  # pass 2+: align with the adapted means, solve again
        accum = work / f"accum{n}"
        accum.mkdir(exist_ok=True)
        run([str(SPHINXTRAIN / "bw"), "-hmmdir", str(model), "-moddeffn",
             str(model / "mdef.txt"), "-ts2cbfn", ".ptm.", *fe["feat"],
             "-dictfn", str(work / "adapt.dict"), "-fdictfn", str(model / "noisedict"),
             "-ctlfn", str(work / "adapt.fileids"), "-lsnfn", str(work / "adapt.transcription"),
             "-cepdir", str(mfc), "-accumdir", str(accum), "-timing", "no",
             *(["-mllrmat", str(out)] if n else [])], work / f"bw{n}.log")
        run([str(SPHINXTRAIN / "mllr_solve"), "-meanfn", str(model / "means"),
             "-varfn", str(model / "variances"), "-outmllrfn", str(out),
             "-accumdir", str(accum)], work / f"mllr_solve{n}.log")
        print(f"pass {n + 1}: {_likelihood(work / f'bw{n}.log')}", file=sys.stderr)
    print(f"wrote {out} ({out.stat().st_size} bytes)", file=sys.stderr)


def feat_params(path: Path) -> dict[str, list[str]]:
    """The model's feat.params split into front-end (sphinx_fe) and feature (bw) options."""
    fe_keys = {"-lowerf", "-upperf", "-nfilt", "-transform", "-lifter", "-remove_noise",
               "-wlen", "-nfft", "-frate", "-alpha"}
    feat_keys = {"-feat", "-svspec", "-agc", "-cmn", "-varnorm"}
    out: dict[str, list[str]] = {"fe": [], "feat": []}
    for line in path.read_text().splitlines():
        key, _, value = line.strip().partition(" ")
        if key in fe_keys:
            out["fe"] += [key, value.strip()]
        elif key in feat_keys:
            out["feat"] += [key, value.strip()]
    return out


def run(cmd: list[str], log: Path | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(cmd[:1])}")


def _likelihood(log: Path) -> str:
    """bw's summary: frames aligned and mean log-likelihood per frame."""
    for line in log.read_text().splitlines():
        if line.startswith("overall>"):
            parts = line.split()
            return f"{parts[2]} frames, log-likelihood {float(parts[4]):.1f} per frame"
    return "no summary in the bw log"


# -- checking it on held-out real speech -----------------------------------------------------------


def check(mllr: Path | None) -> None:
    """Score of a phrase each held-out real recording says, at 8 kHz, with and without the
    transform (log10 likelihood ratio against the phone loop; higher is surer)."""
    for name, phrase in CHECK_PHRASES:
        path = next(TESTDATA.rglob(name))
        pcm = load_clip(SpeechClip(path, 16000, ""), 8000)
        scores = []
        for transform in (None, mllr):
            k = Keyphrase(phrase, "check", 1e-60)
            params = SpotterParams(mllr=str(transform) if transform else "", dedupe=False)
            spotter = KeywordSpotter([k], 8000, params)
            pad = np.zeros(2400, np.int16)
            spots = spotter.feed(0, np.concatenate((pad, pcm, pad)), final=True)
            scores.append(max((s.score for s in spots), default=float("nan")))
        print(f"{name:48} {phrase!r:26} without {scores[0]:+7.1f}  with {scores[1]:+7.1f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--work", type=Path, help="keep the intermediate files here")
    ap.add_argument("--passes", type=int, default=1,
                    help="bw + mllr_solve passes (2+: re-align with the transform)")
    ap.add_argument("--voices", default=",".join(VOICES), help="espeak-ng voices of the corpus")
    ap.add_argument("--check", action="store_true", help="held-out real speech, with/without")
    args = ap.parse_args(argv)
    if args.check:
        check(args.out)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        adapt(args.work, args.out, args.passes, tuple(args.voices.split(",")))
    else:
        with tempfile.TemporaryDirectory(prefix="floorwatch-adapt-") as tmp:
            adapt(Path(tmp), args.out, args.passes, tuple(args.voices.split(",")))


if __name__ == "__main__":
    main()
