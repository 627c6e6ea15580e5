"""The cache root on disk: files, locks, scans, and the health, repair, sharing,
usage, inventory and pruning that read them."""
