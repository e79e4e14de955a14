"""floorwatch benchmarks: capacity, alert latency, wall fan-out and memory (docs/performance.md).

Every benchmark runs the real hub (`python -m server.cli serve`) and its clients in separate
processes on 127.0.0.1, writes JSON to `bench/results/` and prints a Markdown summary.

Commands (`python -m bench.<name> --help`): `capacity`, `latency`, `fanout`, `memory`,
`profile`, `micro`, `report`. Building blocks: `audio` (the scripted calls), `loadgen` and
`wallclient` (client processes), `baseline` (the raw aiohttp + webrtcvad server), `servers`
(starting and provisioning servers), `loadstep` (one bounded load step), `sampler` (/metrics and
/proc readings), `common` (machine, pinning, files), `gcprobe/` (GC pause logging).
"""
