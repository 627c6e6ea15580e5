"""The interpreter pipfresh installs into: finding it, probing it, its ABI tags."""
