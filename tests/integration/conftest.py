"""Fixtures the integration tests share."""
import pytest

from xrdeploy import Deployment


@pytest.fixture
def deployments():
    """make(tables, schema, **kw): a started Deployment, closed after the
    test whatever its outcome."""
    made = []

    def make(tables, schema, **kw):
        d = Deployment(tables, schema, **kw)
        made.append(d)
        d.start()
        return d

    yield make
    for d in made:
        d.close()
