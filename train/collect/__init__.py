"""Collect: run a policy (or the expert, or random actions) over jobs in a gymnasium vector env
(`episodes`), locally or on Ray workers (`workers`), and keep the episodes (`store`)."""
