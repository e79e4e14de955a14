"""Live capture from the agent's sound devices (needs the optional `sound` extra: sounddevice).

One 2-channel capture device, left = agent (headset microphone), right = customer (the softphone's
receive path, e.g. a loopback/monitor source mixed into channel 2). The PortAudio callback runs on
its own thread; it only copies each block onto the event loop's queue. If the hub is unreachable
the blocks are dropped and counted (HubConnection.send_audio), never replayed later.

This path needs a sound card, so the test suite cannot run it on the CI machines; everything it
calls after the capture (framing, sending, analysis) is the same code the WAV source uses.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import numpy as np

from agent_client.connection import HubConnection
from agent_client.supervisor import BargeMixer
from server.ingest_protocol import encode_audio

log = logging.getLogger("floorwatch.agent_client")

CHUNK_S = 0.1


async def stream_devices(conn: HubConnection, *, device: str | None, rate: int,
                         call_id: str | None = None, mixer: BargeMixer | None = None) -> None:
    """Stream one call from the capture device until Ctrl-C, then leave it in wrap-up."""
    try:
        import sounddevice
    except ImportError:
        raise SystemExit("floorwatch-agent live needs the sound extra: "
                         "pip install 'floorwatch[sound]'") from None
    loop = asyncio.get_running_loop()
    blocks: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=50)
    overflows = 0

    def on_block(data: np.ndarray, frames: int, _time: object, status: object) -> None:
        nonlocal overflows
        if status:
            overflows += 1
        block = data.copy()
        loop.call_soon_threadsafe(_offer, blocks, block)

    call_id = call_id or f"call-{uuid.uuid4().hex[:12]}"
    await conn.send_status("on_call", call={"id": call_id, "direction": "inbound",
                                            "customer": "", "sample_rate": rate})
    offset = 0
    chunk_no = 0
    try:
        with sounddevice.InputStream(device=device, channels=2, samplerate=rate, dtype="int16",
                                     blocksize=round(rate * CHUNK_S), callback=on_block):
            log.info("streaming call %s from %s at %d Hz; Ctrl-C ends it", call_id,
                     device or "the default device", rate)
            while True:
                block = await blocks.get()
                if mixer is not None:  # a barging supervisor goes out to the call too
                    block = mixer.mix_into(block)
                await conn.send_audio(encode_audio(chunk_no, offset, block))
                offset += len(block)
                chunk_no += 1
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the call; cancellation still propagates after the finally
    finally:
        if overflows:
            log.warning("capture overflowed %d times (audio lost on this machine)", overflows)
        await conn.send_status("wrap_up")


def _offer(queue: asyncio.Queue[np.ndarray], block: np.ndarray) -> None:
    if not queue.full():
        queue.put_nowait(block)
