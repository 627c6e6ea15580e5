"""What to install: reusing a recorded resolution, hash pins, build keys, kept downloads."""
