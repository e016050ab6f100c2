"""Studies: what an efficiency technique saves, measured in joules on a fixed training workload.

:mod:`.models` defines the workloads (a small transformer language model at two sizes and its
half-width student, built from configs: nothing is downloaded); :mod:`.settings` the settings
compared (precision, LoRA, activation checkpointing, batch size, teacher against student);
:mod:`.runner` runs them interleaved and repeated, each repetition its own greentrack run, and
summarises medians and spreads against a baseline; :mod:`.tune` sweeps GPU power limits and
locked clocks for the energy-time frontier. torch is imported inside the functions.
"""
