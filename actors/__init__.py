"""The streaming pipeline as Ray actors, in three layers (each imports only the ones listed before it):

- ``actors.config``, ``actors.errors``, ``actors.status``: the shared vocabulary (configs, errors, status types);
- ``actors.workers``: the data plane, plain worker classes (source, encoder, memory, LLM) with thin Ray shells
  (``workers.remote``) and the loop/socket plumbing they share;
- ``actors.control``: the controller actor that starts, places, wires and scales the workers per stream;
- ``actors.client``: how a process reaches a pipeline (``client.pipeline`` starts or joins one) and the
  ``PipelineClient`` over its controller.
"""
