"""Losses of dense detection: the elementwise functions, their curves, and the simulated batch's budget."""
