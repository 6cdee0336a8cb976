"""The one training loop of pyrostruct.

Every optimization in the package runs through :func:`train`: :func:`~pyrostruct.fit`,
the restarts of :func:`~pyrostruct.select`, the estimators of
:func:`~pyrostruct.causal.discover` and
:func:`~pyrostruct.selection.type2_maximum_likelihood`. In the spirit of
NumPyro's ``SVI.run``: a *step* is any function that takes one optimizer step and
returns its loss (``SVI.step``, or a hand-written update); what varies between
callers is attached as hooks:

- :class:`TemperatureHook` steps Gumbel-softmax temperature schedules;
- :class:`SubspaceHook` runs the removal-and-addition updates of
  :class:`~pyrostruct.infer.autoguide.AutoSparseSubspace`;
- :class:`ProgressHook` shows a tqdm bar with the ELBO;
- :class:`CheckpointHook` saves a state every ``k`` steps and at the end;
- :class:`ValidateFirstStep` validates distributions on the first step only;
- :class:`CallbackHook` calls a user function ``callback(step, loss)``, which
  may stop the run by returning ``True``.

One policy for everything the callers used to decide apart:

- **non-finite loss**: :class:`~pyrostruct.errors.NonFiniteLossError` (a
  ``RuntimeError``) naming the run and the step, raised at once;
- **parameter store**: :func:`param_scope` trains in a store of its own, so the
  caller's parameters are never cleared or overwritten by a run; a run whose
  result the user keeps (``fit``) *publishes* its trained parameters into the
  caller's store afterwards, as plain Pyro's ``SVI`` would have left them;
- **resume**: ``train(step, stop, start=k)`` continues a run at step ``k``
  (the caller restores its parameters and optimizer state first, e.g. from a
  :class:`CheckpointHook` file or a successive-halving rung).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pyro
import torch
from pyro.distributions.util import is_validation_enabled

from pyrostruct.errors import NonFiniteLossError

__all__ = [
    "CallbackHook",
    "CheckpointHook",
    "Hook",
    "ProgressHook",
    "SubspaceHook",
    "TemperatureHook",
    "ValidateFirstStep",
    "param_scope",
    "publish_params",
    "train",
]


class Hook:
    """Something a training run does around or after each step; override what you need.

    - :meth:`around` wraps the step function (called once, before the first step);
    - :meth:`after` runs after every step with its 0-based index and loss, and
      stops the run by returning ``True``;
    - :meth:`close` runs once when the run ends, also on an exception.
    """

    def around(self, step: Callable[[], Any]) -> Callable[[], Any]:
        return step

    def after(self, step: int, loss) -> bool | None:
        return None

    def close(self) -> None:
        return None


class TemperatureHook(Hook):
    """Steps every temperature schedule once after each training step."""

    def __init__(self, schedules: Iterable) -> None:
        self.schedules = list(schedules)

    def after(self, step: int, loss) -> None:
        for schedule in self.schedules:
            schedule.step()


class SubspaceHook(Hook):
    """Runs each step through a :class:`~pyrostruct.infer.autoguide.SubspaceScheduler`.

    The scheduler captures the gradients of the steps that end with a subspace
    update and swaps the active coordinates (Li et al., ICLR 2024, Algorithm 1).
    """

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler

    def around(self, step: Callable[[], Any]) -> Callable[[], Any]:
        return lambda: self.scheduler.step(step)


class ValidateFirstStep(Hook):
    """Pyro's distribution validation on the first step only, when it is enabled at all.

    Validation checks the model's arguments and values once; on every step it
    costs about four times the step itself on small models.
    """

    def around(self, step: Callable[[], Any]) -> Callable[[], Any]:
        validate = [is_validation_enabled()]

        def first_validated():
            with pyro.validation_enabled(validate[0]):
                loss = step()
            validate[0] = False
            return loss

        return first_validated


class ProgressHook(Hook):
    """A tqdm progress bar over the steps, ``info(loss)`` as its postfix every 10 steps.

    :param int total: the run's last step (exclusive).
    :param int initial: the step it starts from (a resumed run).
    :param info: ``loss -> dict`` for the postfix; default ``{"elbo": -loss}``.
    """

    def __init__(self, desc: str, total: int, initial: int = 0, info=None) -> None:
        from tqdm.auto import tqdm

        self.total = total
        self.info = info if info is not None else (lambda loss: {"elbo": f"{-float(loss):.4g}"})
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step")

    def after(self, step: int, loss) -> None:
        self.bar.update(1)
        if step % 10 == 0 or step == self.total - 1:
            self.bar.set_postfix(self.info(loss))

    def write(self, message: str, file=None) -> None:
        """Print a line without breaking the bar."""
        self.bar.write(message, file=file)

    def close(self) -> None:
        self.bar.close()


class CheckpointHook(Hook):
    """Calls ``save(done)`` every ``every`` steps and after the last step ``stop``.

    ``done`` is the number of steps taken, the ``start`` a resumed run passes
    to :func:`train`.
    """

    def __init__(self, save: Callable[[int], None], every: int, stop: int) -> None:
        self.save, self.every, self.stop = save, every, stop

    def after(self, step: int, loss) -> None:
        done = step + 1
        if done % self.every == 0 or done == self.stop:
            self.save(done)


class CallbackHook(Hook):
    """Calls ``callback(step, loss)`` after each step; a ``True`` return stops the run."""

    def __init__(self, callback: Callable[[int, Any], Any]) -> None:
        self.callback = callback

    def after(self, step: int, loss) -> bool:
        return bool(self.callback(step, loss))


def _is_finite(loss) -> bool:
    if torch.is_tensor(loss):
        return bool(torch.isfinite(loss).all())
    return math.isfinite(loss)


def train(
    step: Callable[[], Any],
    stop: int,
    *,
    start: int = 0,
    hooks: Sequence[Hook] = (),
    name: str = "training",
) -> list:
    """Run ``step()`` for the steps ``start, ..., stop - 1``; returns their losses.

    ``step`` takes one optimizer step and returns its loss: a float (``SVI.step``)
    or a tensor of losses (several restarts trained at once). Hooks wrap the
    step (:meth:`Hook.around`, in order: the first hook is innermost) and run
    after it (:meth:`Hook.after`, in order); any of them may stop the run early.

    :param step: the step function.
    :param int stop: the step to stop before.
    :param int start: the step to start at (> 0 resumes a run).
    :param hooks: :class:`Hook` objects.
    :param str name: the run's name in error messages (``"fit"``, ``"candidate 'K=3'"``).
    :returns: the losses of the steps taken, in order.
    :raises NonFiniteLossError: when a loss is NaN or infinite; the message names
        ``name`` and the step.
    """
    for hook in hooks:
        step = hook.around(step)
    losses = []
    try:
        for index in range(start, stop):
            loss = step()
            if not _is_finite(loss):
                value = loss if not torch.is_tensor(loss) else loss[~torch.isfinite(loss)][0]
                raise NonFiniteLossError(
                    f"{name}: the loss became {float(value)} at step {index}; lower lr, raise "
                    "the temperature, or check the model's supports for impossible values"
                )
            losses.append(loss)
            stopped = [bool(hook.after(index, loss)) for hook in hooks]
            if any(stopped):
                break
    finally:
        for hook in hooks:
            hook.close()
    return losses


@contextlib.contextmanager
def param_scope(state: dict | None = None, publish: bool = False) -> Iterator[Any]:
    """Train in a Pyro parameter store of one's own; the caller's store is left as it was.

    Inside, the global store holds ``state`` (a ``ParamStoreDict.get_state()``
    dict) or nothing. On exit the caller's store comes back; with
    ``publish=True`` the parameters trained inside are then written into it,
    replacing those of the same name (what a plain ``SVI`` run leaves), the
    others kept.

    :yields: the parameter store.
    """
    store = pyro.get_param_store()
    trained = None
    with store.scope(state):
        yield store
        if publish:
            trained = store.get_state()
    if trained is not None:
        publish_params(trained)


def publish_params(state: dict) -> None:
    """Write the parameters of ``state`` (a ``ParamStoreDict.get_state()`` dict) into the
    global store, replacing those of the same name and keeping the others."""
    store = pyro.get_param_store()
    merged = store.get_state()
    merged["params"].update(state["params"])
    merged["constraints"].update(state["constraints"])
    store.set_state(merged)
