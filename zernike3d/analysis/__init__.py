"""Analyses that read several datasets or whole particle sets: clusters, selections, paths."""
