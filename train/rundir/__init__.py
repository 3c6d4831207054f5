"""A campaign's run directory on disk, as the campaign writes it and the results read it: the
JSON-lines records written atomically (`files`), the per-round metrics, verdicts and held-out
outcomes (`runlog.RunLog`), and the checksums and records format that make a damaged part
nameable (`integrity`). It imports neither `train.campaign` nor `train.results`."""
