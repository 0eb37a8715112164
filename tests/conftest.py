"""Fixtures shared by every test package."""

from __future__ import annotations

import os

import pytest

# Tests run without the Ray dashboard and without token auth (the product keeps auth on).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: with Ray workers and torch sharing 2 cores, spinning
# threads turn a 0.3 s prefill into seconds.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# What `make test` installs (apt: the RTSP server, Chromium + chromedriver; the vtest sample clip): under
# CI=true a test skipped for want of one of them fails, so a broken install cannot pass silently.
CI_REQUIRED_MARKERS = ("rtsp", "browser")
CI_REQUIRED_WORDS = ("rtsp", "gstrtspserver", "chromium", "chromedriver", "vtest")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the marks added here must count there
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that starts the Ray cluster is marked `ray` whether or not its module says so (so `make test-fast`,
    which runs without one, never starts it); GPU tests skip cleanly on machines without CUDA."""
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
    if _cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Under CI=true, a skip for infrastructure `make test` installs is a failure (see CI_REQUIRED_*)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    if any(item.get_closest_marker(m) for m in CI_REQUIRED_MARKERS) or \
            any(word in reason.lower() for word in CI_REQUIRED_WORDS):
        report.outcome = "failed"
        report.longrepr = f"CI=true: skipped for want of something `make test` installs: {reason}"


@pytest.fixture(scope="session")
def ray_local():
    """A fresh local Ray cluster (no dashboard) for the whole session; shut down at the end.

    It advertises 4 CPUs on the 2-core machine: the pipeline's actors reserve none (num_cpus=0), so the count
    only bounds tasks and actors that ask for a CPU, not what the pipeline can run.
    """
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
