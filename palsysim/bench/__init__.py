"""`python -m palsysim bench ...`: benchmarks that print figures (preprocessing, CODC layout, generation, video)."""
