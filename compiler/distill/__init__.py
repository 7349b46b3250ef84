"""Distillation: a narrower student of the teacher's architecture, trained on its soft targets (`edgekiln distill`,
`build --distill`). engine.py trains and judges students; figures.py is the report beside the student file."""
