"""Optuna integration: an Optuna study that draws its trials from a bkb service.

    import optuna, inkflow.optuna
    sampler = inkflow.optuna.InkflowSampler("tcp://127.0.0.1:5560")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=100, n_jobs=4)

Users keep Optuna's API, storage, dashboard and plots; the suggestions come
from the service's GP-UCB (docs/bkb.md). The service's named search space
(``arms: {space: ...}``) must hold the study's parameters under the same
names: :func:`space_for` turns Optuna distributions into that space.

Mapping (Optuna distribution -> service axis):

- ``FloatDistribution(low, high, log=True)`` -> ``{log: [low, high], n}``
- ``FloatDistribution(low, high)`` -> ``{lin: [low, high], n}`` (with ``step``:
  every step)
- ``IntDistribution(low, high)`` -> ``{int: [low, high]}`` (``n`` of them
  when the range is wide; ``log=True`` -> a log axis rounded to integers is not
  offered by the service: the int axis is used)
- ``CategoricalDistribution(choices)`` -> ``{choice: [...]}``

Each Optuna trial is one ``ask`` (all parameters at once: relative
sampling); a completed trial is told back in ``after_trial`` (negated when
the study minimises: the service maximises); failed and pruned trials are
released with ``fail``, so their arms go back to the pool.
"""
from __future__ import annotations

import math
import threading
from typing import Any, Dict, Optional, Sequence

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)
from optuna.samplers import BaseSampler
from optuna.study import Study as OptunaStudy
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from . import InkflowError, Study

__all__ = ["InkflowSampler", "space_for", "space_yaml"]

_ARM = "inkflow:arm"
_PARAMS = "inkflow:params"


def space_for(distributions: Dict[str, BaseDistribution], n: int = 20,
              max_int: int = 1000) -> Dict[str, Dict[str, Any]]:
    """The service's ``arms: {space: ...}`` for these Optuna distributions:
    ``n`` values per continuous axis, integer ranges wider than ``max_int``
    thinned to ``n`` values."""
    out: Dict[str, Dict[str, Any]] = {}
    for name, d in distributions.items():
        if isinstance(d, CategoricalDistribution):
            out[name] = {"choice": list(d.choices)}
        elif isinstance(d, IntDistribution):
            count = (d.high - d.low) // d.step + 1
            if d.step != 1:
                raise ValueError("%s: IntDistribution with step %d: the service's int axes have "
                                 "step 1" % (name, d.step))
            out[name] = {"int": [d.low, d.high]} if count <= max_int else \
                {"int": [d.low, d.high], "n": n}
        elif isinstance(d, FloatDistribution):
            if d.log:
                out[name] = {"log": [d.low, d.high], "n": n}
            elif d.step is not None:
                out[name] = {"lin": [d.low, d.high],
                             "n": int(round((d.high - d.low) / d.step)) + 1}
            else:
                out[name] = {"lin": [d.low, d.high], "n": n}
        else:
            raise TypeError("%s: unsupported distribution %r" % (name, d))
    return out


def space_yaml(distributions: Dict[str, BaseDistribution], n: int = 20) -> str:
    """:func:`space_for` as one line of YAML flow style (for a config file)."""
    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join("%s: %s" % (k, val(x)) for k, x in v.items()) + "}"
        raise TypeError(v)
    return val(space_for(distributions, n))


class InkflowSampler(BaseSampler):
    """An Optuna sampler backed by a bkb service.

    ``endpoint``: the service's router source; ``key``: the study's key when
    the operator has ``key_by`` (the first ask creates it); ``timeout``:
    seconds per request. Thread-safe (``study.optimize(..., n_jobs=k)``).
    Single-objective studies only.
    """

    def __init__(self, endpoint: str, key: Optional[str] = None, timeout: float = 30.0):
        self._svc = Study(endpoint, key=key, timeout=timeout)
        self._search_space = optuna.samplers.IntersectionSearchSpace()
        self._lock = threading.Lock()
        self._asked: Dict[int, Dict[str, Any]] = {}  # trial id -> {"arm", "params"}

    def close(self) -> None:
        self._svc.close()

    # one ask per trial, at its first sampling call
    def _ask(self, study: OptunaStudy, trial: FrozenTrial) -> Dict[str, Any]:
        with self._lock:
            got = self._asked.get(trial._trial_id)
        if got is not None:
            return got
        if len(study.directions) != 1:
            raise InkflowError("InkflowSampler: multi-objective studies are not supported")
        t = self._svc.ask()
        if not t.params:
            raise InkflowError("the service's arms are not a named space: configure "
                               "arms: {space: ...} (inkflow.optuna.space_yaml)")
        got = {"arm": t.arm, "params": t.params}
        study._storage.set_trial_system_attr(trial._trial_id, _ARM, t.arm)
        with self._lock:
            self._asked[trial._trial_id] = got
        return got

    @staticmethod
    def _convert(name: str, value: Any, dist: BaseDistribution) -> Any:
        if isinstance(dist, IntDistribution):
            value = int(value)
        elif isinstance(dist, FloatDistribution):
            value = float(value)
            # a grid end computed in log space may differ from the bound in the last bit
            if dist.low * (1 - 1e-12) <= value < dist.low:
                value = dist.low
            elif dist.high < value <= dist.high * (1 + 1e-12):
                value = dist.high
        try:
            ok = dist._contains(dist.to_internal_repr(value))
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise InkflowError("service parameter %s = %r is not in the study's %r: configure the "
                               "service with inkflow.optuna.space_for()" % (name, value, dist))
        return value

    def infer_relative_search_space(self, study: OptunaStudy,
                                    trial: FrozenTrial) -> Dict[str, BaseDistribution]:
        return self._search_space.calculate(study)

    def sample_relative(self, study: OptunaStudy, trial: FrozenTrial,
                        search_space: Dict[str, BaseDistribution]) -> Dict[str, Any]:
        got = self._ask(study, trial)
        out = {}
        for name, dist in search_space.items():
            if name not in got["params"]:
                raise InkflowError("the service's space has no parameter %r (it has %s)"
                                   % (name, sorted(got["params"])))
            out[name] = self._convert(name, got["params"][name], dist)
        return out

    def sample_independent(self, study: OptunaStudy, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        got = self._ask(study, trial)
        if param_name not in got["params"]:
            raise InkflowError("the service's space has no parameter %r (it has %s)"
                               % (param_name, sorted(got["params"])))
        return self._convert(param_name, got["params"][param_name], param_distribution)

    def after_trial(self, study: OptunaStudy, trial: FrozenTrial, state: TrialState,
                    values: Optional[Sequence[float]]) -> None:
        with self._lock:
            got = self._asked.pop(trial._trial_id, None)
        if got is None:  # never sampled (no parameters, or enqueued fixed params)
            return
        if state == TrialState.COMPLETE and values and math.isfinite(values[0]):
            v = values[0] if study.direction == StudyDirection.MAXIMIZE else -values[0]
            self._svc.tell(got["arm"], v)
        else:  # failed, pruned, or a non-finite value: give the arm back
            self._svc.fail(got["arm"])
