"""The data side of the method (docs/data.md).

io (decode any fundus photograph) -> patches (the 8x8 grid and its byte codec) -> labels (lesion
masks to patch labels) -> cohort (which images, split, labeled subsets; read by idrid from three
layouts) -> cache (preprocess once, keyed by content). summary answers ``dataset summary``.
"""
