"""The target device before we own it: will the bundle run there (wheels, op versions, RAM), how fast (estimate)."""
