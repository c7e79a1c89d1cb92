"""Synthetic task configuration: the file level 1 edits (top-level constants only)."""

LEARNING_RATE = 0.001
BATCH_SIZE = 32
DEPTH = 4
WIDTH = 256
DROPOUT = 0.1
WARMUP_FRAC = 0.05
WEIGHT_DECAY = 0.01
BETA2 = 0.95
ACTIVATION = "gelu"
SCHEDULE = "cosine"
