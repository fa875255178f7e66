"""Committed trained weights and their cards (package data: found in any install)."""
