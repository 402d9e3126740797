import pytest

from rewards import TestCaseGrader


@pytest.fixture(scope="session")
def grader():
    """A TestCaseGrader on a real LocalSandbox (2 slots, the harness preloaded), 1 s of CPU per run."""
    with TestCaseGrader(workers=2, time_limit_s=1.0) as g:
        yield g
