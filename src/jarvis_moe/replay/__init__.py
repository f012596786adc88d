"""Standalone replay script shipped next to the findings: rebuilds slow MoE ops on a GPU and times them."""
