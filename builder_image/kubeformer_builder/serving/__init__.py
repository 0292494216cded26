"""Local serving: run Triton on a verified artifact, with serving-time overrides."""
