"""Organize: the verified episodes of a round (and of earlier ones) into what the updates learn
from: SFT episodes, RL groups, DPO pairs (`datasets`), put together per round (`round_data`)."""
