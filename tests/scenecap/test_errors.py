"""One error hierarchy: every condition has a code of its own, and a code names one class."""

from __future__ import annotations

import pytest

from scenecap.core import errors
from scenecap.core.errors import ERRORS_BY_CODE, ScenecapError, error_for_code


def every_error_class() -> list[type[ScenecapError]]:
    found, pending = [], [ScenecapError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_class_has_a_code_of_its_own() -> None:
    codes = [cls.code for cls in every_error_class()]
    assert len(codes) == len(set(codes)), sorted(codes)


@pytest.mark.parametrize("code", sorted(ERRORS_BY_CODE))
def test_a_code_rebuilds_exactly_its_class(code: str) -> None:
    rebuilt = error_for_code(code, "message", {"limit": 1})
    assert type(rebuilt) is ERRORS_BY_CODE[code]
    assert (rebuilt.code, rebuilt.message, rebuilt.details) == (code, "message", {"limit": 1})


def test_the_codes_clients_catch_most_are_their_own_classes() -> None:
    assert type(error_for_code("INVALID_MEDIA_URL", "")) is errors.InvalidMediaUrl
    assert type(error_for_code("MEDIA_UNREADABLE", "")) is errors.MediaUnreadable
    assert type(error_for_code("NOT_FOUND", "")) is errors.NotFound


def test_an_unknown_code_keeps_its_message() -> None:
    rebuilt = error_for_code("SOMETHING_NEW", "a newer server said this")
    assert type(rebuilt) is ScenecapError and rebuilt.message == "a newer server said this"
