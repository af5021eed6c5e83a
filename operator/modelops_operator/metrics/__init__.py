"""Triton metrics: scraping (I/O) and the pure maths."""
