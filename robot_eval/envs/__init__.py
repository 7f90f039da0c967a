"""Gymnasium environments (imported lazily by gymnasium.make through entry-point strings)."""
