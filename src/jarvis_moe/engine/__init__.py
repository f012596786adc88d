"""The analysis engine: input files in, typed metrics out (contract → load → figures → MoE model → impact → metrics)."""
