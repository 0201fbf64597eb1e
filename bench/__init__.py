"""RiskFlow benchmarks: side-by-side measurements printed as ratios (not tests)."""
