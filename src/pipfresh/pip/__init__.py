"""Everything about pip itself: which pip, its options and configuration, running it,
its ``--report``, its HTTP cache entries and console lines."""
