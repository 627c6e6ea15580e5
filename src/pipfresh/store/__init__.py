"""The per-ABI store of unpacked wheels and installing from it into a target."""
