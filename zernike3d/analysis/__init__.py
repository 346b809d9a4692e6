"""Analyses that read several datasets or whole particle sets: clusters, selections, paths,
alignment of two maps."""
