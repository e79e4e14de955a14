"""`floorwatch-agent`: stream a call from a WAV, simulate a floor, or stream live sound devices."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import numpy as np

from agent_client.connection import FatalHubError, HubConnection
from agent_client.stream import SourceError, read_transcript, read_wav, stream_call
from agent_client.supervisor import BargeMixer, SupervisorVoice, VoicePlayer, VoiceRecorder
from agent_client.wavfile import write_wav

log = logging.getLogger("floorwatch.agent_client")


def _ingest_urls(hubs: str) -> list[str]:
    """A comma-separated list of hubs of one floor, each as accepted by `_ingest_url`."""
    return [_ingest_url(h.strip()) for h in hubs.split(",") if h.strip()]


def _ingest_url(hub: str) -> str:
    """Accept `http://host:port`, `ws://host:port` or a full `/ingest/v1` URL."""
    url = hub.rstrip("/")
    if url.startswith("http://"):
        url = "ws://" + url.removeprefix("http://")
    elif url.startswith("https://"):
        url = "wss://" + url.removeprefix("https://")
    if not url.endswith("/ingest/v1"):
        url += "/ingest/v1"
    return url


async def _stream(args: argparse.Namespace) -> int:
    pcm, rate = read_wav(args.wav)
    transcript = read_transcript(args.transcript) if args.transcript else None
    conn = HubConnection(_ingest_urls(args.hub), args.agent, args.token)
    recorder = VoiceRecorder(args.supervisor_wav, rate) if args.supervisor_wav else None
    mixer = BargeMixer(rate)
    conn.on_voice = SupervisorVoice(*([recorder.add] if recorder else []), mixer=mixer)
    conn.on_monitor = _show_monitors
    sent: list[np.ndarray] | None = [] if args.sent_wav else None
    conn.start()
    try:
        await conn.wait_connected(timeout=args.connect_timeout)
        await conn.send_status("logged_in", **({"name": args.name} if args.name else {}))
        await conn.send_status("ready")
        report = await stream_call(conn, pcm, rate, transcript, speed=args.speed,
                                   call_id=args.call_id, customer=args.customer or "",
                                   mixer=mixer, sent=sent)
        await conn.send_status("logged_out")
        if not await conn.drain(timeout=args.connect_timeout):
            if conn.fatal is not None:
                raise conn.fatal
            print(f"floorwatch-agent: {conn.pending} status events not acknowledged",
                  file=sys.stderr)
            return 1
    finally:
        await conn.close()
        if recorder is not None:
            recorder.write()
        if sent is not None:
            write_wav(args.sent_wav, np.concatenate(sent) if sent else np.zeros((0, 2), np.int16),
                      rate)
    print(f"call {report.call_id}: {report.audio_s:.1f} s of audio sent in "
          f"{report.chunks_sent} chunks, {report.chunks_dropped} dropped by this client, "
          f"{report.transcript_lines} transcript lines")
    return 0


def _show_monitors(sessions: list[dict[str, str]]) -> None:
    """The agent's desktop says who is monitoring the call (unless the hub is told not to)."""
    if sessions:
        who = ", ".join(f"{s.get('user')} ({s.get('mode')})" for s in sessions)
        print(f"floorwatch-agent: supervisor on this call: {who}", file=sys.stderr)
    else:
        print("floorwatch-agent: no supervisor on this call any more", file=sys.stderr)


async def _simulate(args: argparse.Namespace) -> int:
    from agent_client.simulate import simulate_floor

    await simulate_floor(_ingest_urls(args.hub), args.agents, token=args.token,
                         tokens_file=args.tokens, seed=args.seed, rate=args.rate,
                         duration_s=args.duration)
    return 0


async def _live(args: argparse.Namespace) -> int:
    from agent_client.live import stream_devices
    conn = HubConnection(_ingest_urls(args.hub), args.agent, args.token)
    player = VoicePlayer(args.rate, args.output_device)
    mixer = BargeMixer(args.rate)
    conn.on_voice = SupervisorVoice(player.add, mixer=mixer)
    conn.on_monitor = _show_monitors
    conn.start()
    try:
        await conn.wait_connected(timeout=args.connect_timeout)
        await stream_devices(conn, device=args.device, rate=args.rate, call_id=args.call_id,
                             mixer=mixer)
        await conn.drain(timeout=args.connect_timeout)
    finally:
        await conn.close()
        player.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="floorwatch-agent",
                                     description="floorwatch agent desktop client")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def connection_args(p: argparse.ArgumentParser, agent: bool = True) -> None:
        p.add_argument("--hub", required=True,
                       help="hub URL, e.g. http://127.0.0.1:8740; several hubs of one floor "
                            "comma-separated (tried in turn after a failure)")
        if agent:
            p.add_argument("--agent", required=True, help="agent id")
            p.add_argument("--token", default=os.environ.get("FLOORWATCH_AGENT_TOKEN"),
                           required="FLOORWATCH_AGENT_TOKEN" not in os.environ,
                           help="agent token (or $FLOORWATCH_AGENT_TOKEN)")
        p.add_argument("--connect-timeout", type=float, default=30.0)

    stream = sub.add_parser("stream", help="stream one call from a stereo WAV, then exit")
    connection_args(stream)
    stream.add_argument("--wav", type=Path, required=True,
                        help="stereo 16-bit WAV at 8 or 16 kHz: left agent, right customer")
    stream.add_argument("--transcript", type=Path,
                        help="JSON lines {offset_s, speaker, text} sent at their offsets")
    stream.add_argument("--speed", type=float, default=1.0, help="1 = real time; 10 = 10x")
    stream.add_argument("--call-id")
    stream.add_argument("--name", help="agent display name")
    stream.add_argument("--customer", help="customer number (masked before it is sent)")
    stream.add_argument("--supervisor-wav", type=Path,
                        help="write what supervisors said to the agent (whisper and barge) to "
                             "this mono WAV, aligned to the call")
    stream.add_argument("--sent-wav", type=Path,
                        help="write the stereo audio as sent to the call (with barge mixed in)")
    stream.set_defaults(func=_stream)

    sim = sub.add_parser("simulate", help="a synthetic floor of N agents")
    connection_args(sim, agent=False)
    sim.add_argument("--agents", type=int, default=24)
    sim.add_argument("--tokens", type=Path,
                     help="file of 'agent_id token' lines (from floorwatch add-agent)")
    sim.add_argument("--token", help="one token shared by all agents (demo mode only)")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--rate", type=int, choices=(8000, 16000), default=8000)
    sim.add_argument("--duration", type=float, help="stop after this many seconds")
    sim.set_defaults(func=_simulate)

    live = sub.add_parser("live", help="stream live sound devices (needs the 'sound' extra)")
    connection_args(live)
    live.add_argument("--device", help="a 2-channel capture device (left agent, right customer)")
    live.add_argument("--output-device",
                      help="where supervisors' whisper and barge are played (the headset)")
    live.add_argument("--rate", type=int, choices=(8000, 16000), default=16000)
    live.add_argument("--call-id")
    live.set_defaults(func=_live)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "speed", 1.0) <= 0:
        raise SystemExit("floorwatch-agent: --speed must be > 0")
    try:
        code = asyncio.run(args.func(args))
    except SourceError as exc:
        raise SystemExit(f"floorwatch-agent: {exc}") from None
    except FatalHubError as exc:
        raise SystemExit(f"floorwatch-agent: hub refused: {exc}") from None
    except TimeoutError:
        raise SystemExit("floorwatch-agent: could not reach the hub in time") from None
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    main()
