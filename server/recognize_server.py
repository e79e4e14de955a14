"""A small streaming ASR server speaking the Vosk WebSocket protocol, backed by pocketsphinx.

    python -m server.recognize_server --port 2700        # English dictation, 8 or 16 kHz

It is what `AsrServerRecognizer` (server/recognize_asr.py) is tested against, and a way to try
the `asr` recognizer without a Kaldi model: real recognition (pocketsphinx's bundled US-English
acoustic model, language model and dictionary), the real protocol. For production, and for
Mandarin, run vosk-server (or any server of the same protocol) instead: docs/kws.md.

Per connection: `{"config": {"sample_rate": N, "words": 1}}` (optional, text), then binary
16-bit mono PCM; one JSON reply per binary frame, `{"partial": text}` or, when a sentence ends
(0.4 s of silence after speech), `{"result": [{"word", "start", "end", "conf"}], "text": ...}`
with times in seconds of the audio received on this connection; `{"eof" : 1}` gets the last
result and the server closes. Decoding runs in a thread, so one connection never stalls another.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

import numpy as np

from server.analysis.kws import SEED_CMN, Upsampler2x

log = logging.getLogger("floorwatch.asr_server")

END_SILENCE_S = 0.4  # silence after speech that ends a sentence
SPEECH_RMS = 300.0  # a 10 ms frame louder than this is speech (about -40 dBFS)
_SKIP = {"<s>", "</s>", "<sil>", "[NOISE]", "(NULL)"}


class Session:
    """One connection's recognizer: energy endpointing and a pocketsphinx dictation decoder."""

    def __init__(self, sample_rate: int = 16000, words: bool = False) -> None:
        from pocketsphinx import Decoder

        if sample_rate not in (8000, 16000):
            raise ValueError(f"sample_rate must be 8000 or 16000, got {sample_rate}")
        self.sample_rate = sample_rate
        self.words = words
        self._decoder = Decoder(loglevel="ERROR")
        self._decoder.set_cmn(SEED_CMN[sample_rate])
        self._upsampler = Upsampler2x() if sample_rate == 8000 else None
        self._pos = 0  # samples received
        self._utt_start: int | None = None
        self._quiet = 0  # samples of silence at the end of the open sentence

    def accept(self, data: bytes) -> dict[str, Any]:
        pcm = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
        frame = self.sample_rate // 100
        frames = len(pcm) // frame
        loud = np.sqrt(np.mean(pcm[: frames * frame].reshape(frames, frame).astype(np.float64)
                               ** 2, axis=1)) > SPEECH_RMS if frames else np.zeros(0, bool)
        start = self._pos
        self._pos += len(pcm)
        if self._utt_start is None:
            if not loud.any():
                return {"partial": ""}
            first = int(np.argmax(loud)) * frame
            self._utt_start = start + first
            self._decoder.start_utt()
            pcm = pcm[first:]
            loud = loud[first // frame:]
        self._process(pcm)
        if loud.any():
            self._quiet = (len(loud) - 1 - int(np.flatnonzero(loud)[-1])) * frame
        else:
            self._quiet += len(pcm)
        if self._quiet >= END_SILENCE_S * self.sample_rate:
            return self._result()
        hyp = self._decoder.hyp()
        return {"partial": hyp.hypstr if hyp else ""}

    def finish(self) -> dict[str, Any]:
        return self._result() if self._utt_start is not None else {"text": ""}

    def _process(self, pcm: np.ndarray) -> None:
        if self._upsampler is not None:
            pcm = self._upsampler.process(pcm)
        if len(pcm):
            self._decoder.process_raw(pcm.tobytes(), False, False)

    def _result(self) -> dict[str, Any]:
        assert self._utt_start is not None
        self._decoder.end_utt()
        origin = self._utt_start / self.sample_rate
        delay = Upsampler2x.DELAY / self.sample_rate if self._upsampler else 0.0
        words = []
        for seg in self._decoder.seg():
            word = seg.word.split("(")[0]
            if word in _SKIP:
                continue
            words.append({"word": word, "conf": 1.0,
                          "start": round(origin + seg.start_frame / 100 - delay, 3),
                          "end": round(origin + (seg.end_frame + 1) / 100 - delay, 3)})
        self._utt_start = None
        self._quiet = 0
        text = " ".join(w["word"] for w in words)
        return {"result": words, "text": text} if self.words else {"text": text}


async def handle(ws: Any) -> None:
    session: Session | None = None
    config: dict[str, Any] = {}
    peer = ws.remote_address
    log.info("asr connection from %s", peer)
    async for message in ws:
        if isinstance(message, str):
            try:
                parsed = json.loads(message)
            except ValueError:
                await ws.close(1003, "expected JSON")
                return
            if "config" in parsed:
                config.update(parsed["config"])
                continue
            if "eof" in parsed:
                reply = await asyncio.to_thread(session.finish) if session else {"text": ""}
                await ws.send(json.dumps(reply))
                break
            continue
        if session is None:
            try:
                session = await asyncio.to_thread(
                    Session, int(config.get("sample_rate", 16000)), bool(config.get("words")))
            except ValueError as exc:
                await ws.close(1003, str(exc))
                return
        await ws.send(json.dumps(await asyncio.to_thread(session.accept, message)))
    log.info("asr connection from %s closed", peer)


async def serve(host: str, port: int, ready: asyncio.Event | None = None) -> None:
    from websockets.asyncio.server import serve as ws_serve

    socket_log = logging.getLogger("floorwatch.asr_server.socket")
    socket_log.setLevel(logging.INFO)  # frames (recognised text) are never logged
    async with ws_serve(handle, host, port, max_size=2**22, compression=None,
                        logger=socket_log) as server:
        log.info("asr server (Vosk protocol, pocketsphinx en-us) on ws://%s:%d", host, port)
        if ready is not None:
            ready.set()
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2700)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
