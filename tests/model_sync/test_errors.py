"""One reading of an HTTP status for the backends that speak plain HTTP."""

from __future__ import annotations

import pytest

from model_sync.errors import CredentialsError, NotFoundError, TransferError, TransientError, for_status


@pytest.mark.parametrize(
    "status,kind,code",
    [
        (401, CredentialsError, 4),
        (403, CredentialsError, 4),
        (404, NotFoundError, 5),
        (429, TransientError, 9),
        (500, TransientError, 9),
        (503, TransientError, 9),
        (400, TransferError, 9),
        (416, TransferError, 9),
    ],
)
def test_each_status_has_one_meaning(status, kind, code):
    err = for_status(status, "hf://a/b/c.pt", "check HF_TOKEN")
    assert type(err) is kind and err.exit_code == code and str(err).startswith("hf://a/b/c.pt: ")
    if kind in (CredentialsError, NotFoundError):
        assert str(err).endswith("; check HF_TOKEN")
