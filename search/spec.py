"""The sweep specification: a TOML file whose every field a CLI flag can override.

name = "quickstart"                  # the study folder is STORAGE/NAME
data = "synthetic"                   # dataset folder, CSV or synthetic[:key=value,...]
space = "aux_weights_deep"           # a registered space or module:function
objectives = ["auc:max", "mastery_corr:max"]  # default: DEFAULT_OBJECTIVES below
constraints = ["auc >= best_lookup", "mastery_lift > 0"]  # default: DEFAULT_CONSTRAINTS below
trials = 8                           # in total, including failed ones
concurrent = 2                       # trials at a time
sampler = "tpe"                      # tpe, nsga2, gp or random
scheduler = "fifo"                   # fifo; asha (stops trials weak on AUC alone); mo-asha
                                     # (stops trials weak on all the objectives, search/run/schedulers.py)
grace_period = 1                     # asha and mo-asha: the first epoch trials are compared at
reduction_factor = 2                 # ... and the factor between rungs (top 1/factor continue)
seed = 0
seed_mode = "common"                 # every trial trains with `seed`; "per-trial": seed + trial number
storage = "runs"                     # a folder or a URI pyarrow understands (s3://..., gs://...)
keep_checkpoints = 0                 # epoch checkpoints kept per trial; 0 keeps all
retries = 1                          # a failed trial (a dead worker, an error) starts again from
                                     # its last checkpoint this many times before it is an error
[reference]                          # optional: the hypervolume's reference point, per objective
auc = 0.5                            # objectives left out get the worst observed value (analysis/pareto.py)
[[start]]                            # optional, repeatable: a trial to run first, given as the
use_sparsity = false                 # space's Optuna parameters; those left out are sampled
[resources]                          # per trial
cpus = 1
gpus = 0                             # a fraction shares one GPU between trials
[train]                              # fixed training settings: a preset, then overrides
preset = "paper"                     # default: gainakt.presets.DEFAULT_PRESET
epochs = 4
"""

from __future__ import annotations

import difflib
import json
import math
import operator
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from gainakt import schema
from gainakt.config import MAX_SEED, build, merge, read_toml, with_assignments
from gainakt.errors import ConfigError
from gainakt.guarantees import GAIN_METRICS
from gainakt.presets import DEFAULT_PRESET
from gainakt.schema import Direction
from search.schema import exact_number

Sampler = Literal["tpe", "nsga2", "gp", "random"]
Scheduler = Literal["fifo", "asha", "mo-asha"]
SeedMode = Literal["common", "per-trial"]
# The spaces `spaces/` registers, named here so that `run --help` lists them without importing
# Optuna (tests/project_tests/test_defaults.py keeps the two equal).
BUILT_IN_SPACES: tuple[str, ...] = ("aux_weights", "aux_weights_deep", "aux_weights_lr")
SAMPLERS: tuple[str, ...] = typing.get_args(Sampler)
SCHEDULERS: tuple[str, ...] = typing.get_args(Scheduler)
SEED_MODES: tuple[str, ...] = typing.get_args(SeedMode)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CONSTRAINT = re.compile(r"\s*([A-Za-z_]\w*)\s*(>=|<=|>|<)\s*(\S+?)\s*(unless\s+fixed)?\s*")
_OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
BOUNDARY_VIOLATION = 1e-12  # the violation of a value on the threshold of a strict constraint
MAX_TRIALS = 1_000_000
MAX_RETRIES = 10  # per trial: a trial that fails more often than that fails for a reason
# Training settings a sweep sets itself, per trial or from its own fields, and how to set them instead.
# A sweep trial's `device`: auto trains on the GPU Ray gave it (if any), cpu never uses one (Ray may
# still have assigned one: the scheduling tests do that on machines without a GPU), cuda insists.
TRIAL_DEVICES = ("auto", "cpu", "cuda")
SWEEP_SETTINGS = {
    "seed": "the sweep's seed (--seed, `seed`) and seed_mode",
    "threads": "resources.cpus (--cpus): a trial's torch threads",
    "data": "the sweep's data (--data, `data`)",
    "out": "the study folder: every trial writes into its own",
    "wandb": "--wandb",
}
# Settings a spec may give that say where a trial runs or logs, not what it learns: with the sweep's
# own, they stay out of the trial table's `fixed.*` columns (a resume elsewhere changes none of them).
RUN_SETTINGS = ("device", "wandb_group", "wandb_project", "wandb_dir", "wandb_name", "wandb_tags")
NOT_FIXED = frozenset(SWEEP_SETTINGS) | frozenset(RUN_SETTINGS)


def check_name(name: str) -> str:
    """A study name: it names a folder, so no path separators and no '..'."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"name {name!r}: letters, digits, '.', '_' and '-' only (it names a folder)")
    return name


def unknown_metric(metric: str, where: str, known: Sequence[str], of: str = "known") -> ConfigError:
    """The one-line error for a metric not among `known` (the metrics `of` the command's context):
    the closest names first, then all of them."""
    close = difflib.get_close_matches(metric, known, n=2, cutoff=0.6)
    guess = f"did you mean {' or '.join(close)}? " if close else ""
    return ConfigError(f"{where}: unknown metric {metric!r} ({guess}{of}: {', '.join(known)})")


def _known_metric(metric: str, where: str) -> str:
    """`metric` if it is a figure of the epoch rows that can be an objective (`gainakt.schema.METRICS`)."""
    if metric not in schema.METRICS:
        raise unknown_metric(metric, where, schema.METRICS)
    return metric


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Direction

    @classmethod
    def parse(cls, text: str) -> Objective:
        """`metric:max` or `metric:min`."""
        metric, sep, direction = text.partition(":")
        if not sep or direction not in ("max", "min"):
            raise ConfigError(f"objective {text!r}: expected metric:max or metric:min")
        metric = _known_metric(metric.strip(), f"objective {text!r}")
        return cls(metric, direction)  # type: ignore[arg-type]  # direction is max or min: checked above

    def __str__(self) -> str:
        return f"{self.metric}:{self.direction}"


BEST_LOOKUP = "best_lookup"  # a threshold: the best lookup's value of the metric, on the study's fold


@dataclass(frozen=True)
class Constraint:
    """A target such as `mastery_lift > 0` or `auc >= best_lookup`; a NaN value never meets it.

    A `best_lookup` threshold is the best lookup's value of the metric on the fold the trials are
    scored on (`baselines.json`): it is a number only once `resolve`d against the study's lookups.
    A constraint `unless fixed` does not count for a trial whose model fixes its metric by
    construction (`gainakt.guarantees`): `faithfulness >= 0.05 unless fixed` asks a head that reads
    the mastery to follow it and leaves a free head, which reads none, to the other constraints.
    Without it, the fixed value is judged like any other (`faithfulness > 0` excludes free heads).
    """

    metric: str
    op: str
    threshold: float | None  # None while a `best_lookup` threshold is unresolved
    relative_to: str | None = None  # BEST_LOOKUP, or None for a number
    unless_fixed: bool = False

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _CONSTRAINT.fullmatch(text)
        if match is None:
            raise ConfigError(
                f"constraint {text!r}: expected 'metric >= value' (or >, <=, <; value a number or "
                f"{BEST_LOOKUP})"
            )
        metric, op, raw, unless = match.groups()
        metric = _known_metric(metric, f"constraint {text!r}")
        if unless:
            return replace(cls.parse(f"{metric} {op} {raw}"), unless_fixed=True)
        if raw == BEST_LOOKUP:
            if metric not in schema.VERSUS_BASELINES:
                raise ConfigError(
                    f"constraint {text!r}: the lookups have no {metric} to compare with (they have: "
                    f"{', '.join(schema.VERSUS_BASELINES)})"
                )
            return cls(metric, op, None, BEST_LOOKUP)
        try:
            threshold = float(raw)
        except ValueError:
            raise ConfigError(f"constraint {text!r}: {raw!r} is not a number or {BEST_LOOKUP}") from None
        if not math.isfinite(threshold):
            raise ConfigError(f"constraint {text!r}: the threshold must be finite")
        low, high = schema.METRIC_SPANS[metric]
        reachable = {
            ">=": threshold <= high,
            ">": threshold < high,
            "<=": threshold >= low,
            "<": threshold > low,
        }
        if not reachable[op]:
            raise ConfigError(
                f"constraint {text!r}: {metric} lies in [{low:g}, {high:g}], so no trial can meet it"
            )
        return cls(metric, op, threshold)

    def resolve(self, baselines: Mapping[str, Mapping[str, float]]) -> Constraint:
        """This constraint with its `best_lookup` threshold made the best of `baselines` (name ->
        metrics, as `baselines.json` holds them); a numeric one as it is."""
        if self.relative_to is None:
            return self
        values = (float(m.get(self.metric, math.nan)) for m in baselines.values())
        scored = [v for v in values if math.isfinite(v)]
        if not scored:
            raise ConfigError(
                f"constraint {self}: no lookup of the study has a {self.metric} to compare with "
                "(the study's baselines.json is missing or lacks it)"
            )
        best = max(scored) if schema.METRIC_DIRECTIONS[self.metric] == "max" else min(scored)
        return replace(self, threshold=best)

    def _threshold(self) -> float:
        if self.threshold is None:
            raise RuntimeError(f"constraint {self} was used before its threshold was resolved")
        return self.threshold

    def met(self, value: float, fixed: bool = False) -> bool:
        """Whether `value` meets the target; with `fixed` (the trial's model fixes the metric by
        construction) a constraint `unless fixed` does not count, so it is met."""
        if fixed and self.unless_fixed:
            return True
        return not math.isnan(value) and _OPERATORS[self.op](value, self._threshold())

    def violation(self, value: float, fixed: bool = False) -> float:
        """How far `value` is on the wrong side of the threshold: 0 exactly when met, inf when NaN.

        A strict bound missed by landing on it (`faithfulness > 0` at 0) is a violation too, of
        `BOUNDARY_VIOLATION`, since Optuna and the front take a violation of 0 as met.
        """
        if self.met(value, fixed):
            return 0.0
        if math.isnan(value):
            return math.inf
        threshold = self._threshold()
        gap = threshold - value if self.op in (">=", ">") else value - threshold
        return max(gap, BOUNDARY_VIOLATION)

    @property
    def bound(self) -> str:
        """The threshold as written: a number, or `best_lookup`."""
        return self.relative_to or exact_number(self._threshold())

    def _written(self, bound: str) -> str:
        return f"{self.metric} {self.op} {bound}" + (" unless fixed" if self.unless_fixed else "")

    def __str__(self) -> str:
        """The constraint as written (its name in Optuna and the trial table): stable once resolved."""
        return self._written(self.bound)

    def shown(self) -> str:
        """As written, with a resolved `best_lookup` threshold's value: `auc >= best_lookup (0.6975)`."""
        if self.relative_to is not None and self.threshold is not None:
            return self._written(f"{self.bound} ({self.threshold:.4f})")
        return str(self)


DEFAULT_OBJECTIVES = (
    Objective("auc", "max"),
    Objective("mastery_corr", "max"),
    Objective("neg_gain_rate", "min"),
)
# Criteria every head can fail, an untrained model included (docs/metrics.md, "The default
# constraints"): predict better than the best lookup, a mastery that carries more than the best
# lookup's, a prediction that follows its mastery where the head reads one, and the degeneracy guards.
# The two `unless fixed` do not count where the model fixes their metric (faithfulness and
# residual_share with a free head, residual_share with a mastery head).
DEFAULT_CONSTRAINTS = (
    Constraint("auc", ">=", None, BEST_LOOKUP),
    Constraint("mastery_lift", ">", 0.0),
    Constraint("faithfulness", ">=", 0.05, unless_fixed=True),
    Constraint("residual_share", "<=", 0.2, unless_fixed=True),
    *(Constraint(metric, "<", limit) for metric, limit in schema.DEGENERACY_LIMITS.items()),
)
# The quick-start sweep: 8 trials of 4 epochs of the cpu-small preset fit in a few minutes on two
# cores, on simulated students who differ more than concepts do and forget (docs/data.md), where a
# model that tracks each student can beat the lookups (PFA: AUC 0.6487) and the Bayes-optimal AUC
# (0.7485) leaves room above them.
DEFAULT_TRAIN: dict[str, Any] = {"preset": DEFAULT_PRESET, "epochs": 4}
DEFAULT_DATA = "synthetic:students_differ=1,forgetting=0.1"
# What a plain `gainakt-search run` runs first (no spec file, the default space, objectives that read
# the gains, so that the space weights gain_performance there): the mastery head over deep mastery,
# which beats PFA on that simulator within its 4 epochs (AUC 0.6855, mastery_lift 0.060 alone).
QUICKSTART_START: dict[str, Any] = {
    "model.gains": "relu",
    "model.mastery": "deep",
    "model.attention": "legacy",
    "model.head": "mastery",
    "use_monotonicity": False,
    "use_mastery_performance": False,
    "weights.gain_performance": 0.01,
    "use_sparsity": False,
    "use_consistency": False,
    "warmup_epochs": 0,
}


@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep; validated at construction except for what needs the data or the space."""

    name: str = "quickstart"
    data: str = DEFAULT_DATA
    space: str = "aux_weights_deep"
    train: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_TRAIN))
    objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES
    constraints: tuple[Constraint, ...] = DEFAULT_CONSTRAINTS
    trials: int = 8
    concurrent: int = 2
    cpus: float = 1.0
    gpus: float = 0.0
    sampler: Sampler = "tpe"
    scheduler: Scheduler = "fifo"
    grace_period: int = 1
    reduction_factor: int = 2
    seed: int = 0
    seed_mode: SeedMode = "common"  # every trial trains with `seed`; per-trial: seed + trial number
    storage: str = "runs"
    keep_checkpoints: int = 0
    retries: int = 1
    reference: Mapping[str, float] = field(default_factory=dict)
    start: tuple[Mapping[str, Any], ...] = ()  # trials run first, as Optuna parameters of the space

    def __post_init__(self) -> None:
        check_name(self.name)
        for name in ("trials", "concurrent"):
            if not 1 <= getattr(self, name) <= MAX_TRIALS:
                raise ConfigError(f"{name} must be from 1 to {MAX_TRIALS:,}, got {getattr(self, name)}")
        last_seed = self.seed + (self.trials - 1 if self.seed_mode == "per-trial" else 0)
        if not 0 <= self.seed <= MAX_SEED or last_seed > MAX_SEED:
            raise ConfigError(
                f"seed must be from 0 to {MAX_SEED} (with seed_mode per-trial, seed + trials - 1 too), "
                f"got {self.seed}"
            )
        for key, how in SWEEP_SETTINGS.items():
            if key in self.train:
                raise ConfigError(
                    f"training setting {key!r} ([train] or --set): the sweep sets it; use {how}"
                )
        if self.train.get("device", "auto") not in TRIAL_DEVICES:
            raise ConfigError(
                f"training setting 'device' must be one of {', '.join(TRIAL_DEVICES)} in a sweep (Ray "
                f"assigns each trial its GPU: ask for them with --gpus), got {self.train['device']!r}"
            )
        if not (self.cpus > 0 and math.isfinite(self.cpus)):
            raise ConfigError(f"resources.cpus must be > 0, got {self.cpus}")
        if not (self.gpus >= 0 and math.isfinite(self.gpus)):
            raise ConfigError(f"resources.gpus must be >= 0, got {self.gpus}")
        if self.gpus > 1 and self.gpus != int(self.gpus):
            raise ConfigError(
                f"resources.gpus must be a fraction of one GPU or a whole number, got {self.gpus}"
            )
        if self.grace_period < 1:
            raise ConfigError(f"grace_period must be >= 1 (epochs), got {self.grace_period}")
        if self.reduction_factor < 2:
            raise ConfigError(f"reduction_factor must be >= 2, got {self.reduction_factor}")
        if self.keep_checkpoints < 0:
            raise ConfigError(f"keep_checkpoints must be >= 0, got {self.keep_checkpoints}")
        if not 0 <= self.retries <= MAX_RETRIES:
            raise ConfigError(f"retries must be from 0 to {MAX_RETRIES}, got {self.retries}")
        if not self.objectives:
            raise ConfigError("at least one objective is needed")
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise ConfigError(f"objectives name a metric twice: {', '.join(metrics)}")
        if not str(self.storage).strip():
            raise ConfigError("storage must name a folder or a URI")
        if not isinstance(self.train.get("preset", DEFAULT_PRESET), str):
            raise ConfigError("train.preset must be a preset name")
        for metric, value in self.reference.items():
            _known_metric(metric, f"reference.{metric}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"reference.{metric} must be a finite number, got {value!r}")

    @property
    def preset(self) -> str:
        return str(self.train.get("preset", DEFAULT_PRESET))

    @property
    def train_settings(self) -> dict[str, Any]:
        """The fixed training settings on top of the preset."""
        return {k: v for k, v in self.train.items() if k != "preset"}

    @property
    def gains_judged(self) -> bool:
        """Whether an objective or a constraint reads the gains (`gainakt.guarantees.GAIN_METRICS`)."""
        metrics = {o.metric for o in self.objectives} | {c.metric for c in self.constraints}
        return bool(metrics & set(GAIN_METRICS))

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def named_objectives(
        self, given: Sequence[str] | None, recorded: Sequence[str] = schema.METRICS
    ) -> tuple[Objective, ...]:
        """`metric:max|min` texts as objectives; a bare metric takes this study's direction for it.
        Each must be among `recorded`, the metrics the study's trials hold."""
        if not given:
            return self.objectives
        directions = {o.metric: o for o in self.objectives}
        out = []
        for text in given:
            metric = text.partition(":")[0].strip()
            if metric not in recorded:
                if metric in schema.METRICS:
                    raise ConfigError(
                        f"objective {text!r}: no trial of this study holds {metric} "
                        f"(this study's metrics: {', '.join(recorded)})"
                    )
                raise unknown_metric(metric, f"objective {text!r}", recorded, of="this study's metrics")
            if ":" not in text and metric not in directions:
                raise ConfigError(
                    f"objective {text!r}: not an objective of the study; "
                    f"give its direction as {text}:max or {text}:min"
                )
            out.append(directions[metric] if ":" not in text else Objective.parse(text))
        if len({o.metric for o in out}) != len(out):
            raise ConfigError(f"objectives name a metric twice: {', '.join(given)}")
        return tuple(out)

    def resolved(self, baselines: Mapping[str, Mapping[str, float]]) -> SweepSpec:
        """This spec with every `best_lookup` threshold made a number (`Constraint.resolve`)."""
        return replace(self, constraints=tuple(c.resolve(baselines) for c in self.constraints))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["train"] = dict(self.train)
        out["reference"] = {k: float(v) for k, v in self.reference.items()}
        out["start"] = [dict(point) for point in self.start]
        out["objectives"] = [str(o) for o in self.objectives]
        out["constraints"] = [str(c) for c in self.constraints]
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "spec") -> SweepSpec:
        """From the TOML layout (or `to_dict()`'s, which is the same with resources flattened)."""
        values = dict(values)
        resources = values.pop("resources", {})
        if not isinstance(resources, Mapping):
            raise ConfigError(f"{where}: [resources] must be a table")
        unknown_resources = set(resources) - {"cpus", "gpus"}
        if unknown_resources:
            raise ConfigError(
                f"{where}: unknown setting 'resources.{min(unknown_resources)}' (known: cpus, gpus)"
            )
        try:
            return build(cls, {**values, **resources})
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    def with_overrides(self, **changes: Any) -> SweepSpec:
        """Replace the fields given (None means: keep); `assignments` are `key=value` training overrides."""
        assignments: Sequence[str] = changes.pop("assignments", ()) or ()
        preset = changes.pop("preset", None)
        updates = {k: v for k, v in changes.items() if v is not None}
        train = dict(self.train)
        if preset is not None:
            train["preset"] = preset
        if assignments:
            train = with_assignments(train, assignments)
        return replace(self, train=train, **updates)


def load_spec(path: str | None) -> SweepSpec:
    """The spec in a TOML file on top of the defaults, or the defaults alone."""
    if path is None:
        return SweepSpec()
    values = read_toml(path)
    if "train" in values:
        if not isinstance(values["train"], Mapping):
            raise ConfigError(
                f"{path}: [train] must be a table of training settings, got {values['train']!r}"
            )
        values["train"] = merge({"preset": DEFAULT_PRESET}, values["train"])
    return SweepSpec.from_dict(values, where=path)


def defaults_markdown() -> str:
    """Every field of a sweep with its default, as the Markdown table docs/sweeps.md shows."""
    rows = []
    for key, value in SweepSpec().to_dict().items():
        if isinstance(value, list):
            shown = ", ".join(f"`{item}`" for item in value) or "none"
        elif isinstance(value, Mapping):
            shown = f"`{json.dumps(value)}`" if value else "none"
        else:
            shown = f"`{value}`"
        rows.append(f"| `{key}` | {shown} |")
    return "\n".join(["| field | default |", "| --- | --- |", *rows]) + "\n"


if __name__ == "__main__":
    print(defaults_markdown(), end="")
