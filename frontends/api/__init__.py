"""tokdyn HTTP API: stream management and OpenAI-compatible chat over live streams, plus Prometheus metrics.

A Starlette app (`app.create_app(backend, config)`) served by uvicorn inside one Ray actor
(`server.ApiActor`, started with `server.start_api(config.api, namespace=...)`); `backend.Backend` is what
it asks, `ray_backend.RayBackend` the pipeline implementation. Routes, the stream-naming convention,
errors and metrics are documented in README.md ("HTTP API"), the one place they are kept.
"""
