"""Framework-neutral structured pruning over a channel graph.

An adapter (compiler/graph/keras_prune.py, compiler/graph/onnx_prune.py) describes a model as a
`ChannelGraph`; `groups.analyze` finds which channels must go together; `importance` scores them;
`sensitivity` chooses how many to remove; the adapter applies the resulting `Plan` to its model.
Nothing here imports a deep-learning framework.
"""
