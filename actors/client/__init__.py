"""Reaching a running pipeline from any process: start or join one (``pipeline``, on the Ray cluster chosen in
``cluster``), call its controller through ``client.PipelineClient``, and route questions over the LLM
replicas (``routing``). Front-ends, benches and tests use this package; it never runs inside an actor."""
