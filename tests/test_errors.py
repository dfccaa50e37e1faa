"""labkit's errors: one module, one base class, context kept across processes."""

from __future__ import annotations

import inspect
import multiprocessing
import pickle

import pytest

import labkit.errors as errors

ERRORS = [getattr(errors, name) for name in errors.__all__]


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
    raise errors.ServerUnreachableError("cannot reach", url="redis://x:1/0")


def test_error_from_a_worker_process_reaches_the_parent() -> None:
    """A labkit error raised in a pool worker arrives in the parent, not a hang."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(_raise_in_child)
        with pytest.raises(errors.ServerUnreachableError) as info:
            result.get(timeout=60)
    assert info.value.url == "redis://x:1/0"
