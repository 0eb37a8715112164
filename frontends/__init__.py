"""What people use to drive the pipeline: the ``tokdyn`` CLI, the demo, offline compression of a file, and the
HTTP API (with the web console). Each front-end talks to the pipeline through ``actors`` and never the
other way round.
"""
