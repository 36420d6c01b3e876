"""Mapping-aware hardware cost: scenarios, ZigZag mapping, memory and area tables."""
