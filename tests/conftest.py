"""Test-wide settings: offline, headless, one torch thread."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A fixed torch thread count (agent.runtime otherwise follows the machine's load): the number of
# threads changes float summation order, and tests compare runs bit for bit, also across the
# campaigns they start as child processes.
os.environ.setdefault("AUTODIDACT_THREADS", "1")

try:  # envs' tests must run without torch installed
    import torch
except ImportError:
    torch = None

if torch is not None:
    # The models under test are tiny: one thread does their matmuls nearly as fast as two, and on
    # a shared or loaded machine several threads per process contend and run many times slower.
    torch.set_num_threads(1)
