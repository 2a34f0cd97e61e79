"""One spawned 2-rank run per session executes every job the collected test modules register."""

import pytest

from _ranks import job_results, run_jobs


@pytest.fixture(scope="session")
def _job_folders(tmp_path_factory):
    return run_jobs(tmp_path_factory.mktemp("ranks"))


@pytest.fixture(scope="session")
def rank_results(_job_folders):
    """``rank_results(job)``: every rank's saved results of ``job``."""
    return lambda job: job_results(_job_folders[job.__name__])
