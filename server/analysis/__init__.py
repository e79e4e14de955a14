"""Call analysis: sans-I/O and clock-free. Audio (with its own timeline) in, events out."""
