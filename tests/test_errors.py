"""labkit's errors: one base class, context kept across processes.

The library's errors are in ``labkit.errors``, the server manager's in
``labkit.server.errors``, the lab's in ``labkit.lab.errors``.
"""

from __future__ import annotations

import inspect
import multiprocessing
import pickle

import pytest

import labkit.errors as errors
import labkit.lab.errors as lab_errors
import labkit.server.errors as server_errors

ERRORS = [
    getattr(module, name)
    for module in (errors, server_errors, lab_errors)
    for name in module.__all__
]


def _example(cls: type[errors.LabkitError]) -> errors.LabkitError:
    init = cls.__init__
    if init is Exception.__init__:  # no context of its own
        return cls("something went wrong")
    kwargs = {
        name: f"<{name}>"
        for name, p in inspect.signature(init).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    }
    return cls("something went wrong", **kwargs)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_every_error_is_a_labkit_error(cls: type) -> None:
    """Every exported error derives from LabkitError."""
    assert issubclass(cls, errors.LabkitError)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_errors_pickle_with_their_context(cls: type[errors.LabkitError]) -> None:
    """An error survives pickling with its message and context attributes."""
    err = _example(cls)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and str(back) == str(err)
    assert back.__dict__ == err.__dict__


def _raise_in_child() -> None:
    raise server_errors.ServerUnreachableError("cannot reach", url="redis://x:1/0")


def test_error_from_a_worker_process_reaches_the_parent() -> None:
    """A labkit error raised in a pool worker arrives in the parent, not a hang."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(_raise_in_child)
        with pytest.raises(server_errors.ServerUnreachableError) as info:
            result.get(timeout=60)
    assert info.value.url == "redis://x:1/0"


def test_errors_take_a_message_then_keyword_context() -> None:
    """One constructor convention: ``(message, *, context...)`` for every error."""
    for cls in ERRORS:
        if cls.__init__ is Exception.__init__:  # no context of its own
            continue
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        if not params:
            continue
        assert params[0].name == "message", cls.__name__
        assert params[0].kind is params[0].POSITIONAL_OR_KEYWORD, cls.__name__
        assert all(p.kind is p.KEYWORD_ONLY for p in params[1:]), cls.__name__


def test_library_errors_are_few_and_library_only() -> None:
    """errors.py holds the library's errors; the lab's and server's live apart."""
    assert len(errors.__all__) <= 16
    assert not set(errors.__all__) & set(lab_errors.__all__ + server_errors.__all__)


def test_wrong_type_error_carries_key_found_expected() -> None:
    err = errors.WrongTypeError(
        "key 'k' holds a hash", key="k", found="hash", expected="stream"
    )
    assert (err.key, err.found, err.expected) == ("k", "hash", "stream")
    assert isinstance(err, errors.LabkitError)


@pytest.mark.parametrize(
    "old",
    [
        "CacheError",
        "CacheKeyTypeError",
        "HistoryKeyError",
        "LimiterKeyError",
        "QueueKeyError",
        "SeriesKeyError",
    ],
)
def test_old_wrong_type_names_are_deprecated_aliases(old: str) -> None:
    """The per-pattern names still catch WrongTypeError, with a warning."""
    with pytest.warns(DeprecationWarning, match="WrongTypeError"):
        alias = getattr(errors, old)
    assert alias is errors.WrongTypeError
    assert old not in errors.__all__


def test_moved_names_are_gone_from_the_library() -> None:
    """Lab and server errors are not importable from labkit.errors."""
    with pytest.raises(AttributeError):
        errors.ServerStartError  # noqa: B018
