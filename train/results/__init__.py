"""Results: held-out evaluation (`evaluate`), paired comparison (`compare`, `stats`), plots,
input-reliance diagnostics, and export to other tools' dataset formats (`export`)."""
