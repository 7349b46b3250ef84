"""The commands besides `build` (explain, inspect, targets, validate, prune-scan): each a thin layer over the stages."""
