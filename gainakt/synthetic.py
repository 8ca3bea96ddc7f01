"""The built-in dataset `synthetic`: simulated students whose true mastery is known.

Each student has an ability; each concept a difficulty and a learning rate. A
student practises one concept at a time in skill-builder runs (until three
correct answers in a row, or at most `run_cap` attempts) and then moves to
another concept. True mastery starts from ability minus difficulty (its floor)
and grows with every attempt (more after a correct answer); the response is
drawn with probability `guess + (1 - guess - slip) * mastery`.

Options, all off by default (the defaults reproduce the original simulator bit for bit):

- `forgetting` f: between two practices of a concept, its true mastery decays towards its
  floor, `floor + (m - floor) * exp(-f * k)`, k the number of interactions in between
  (so consecutive attempts within a run lose nothing). Without it mastery never drops.
- `ability_spread`, `difficulty_spread`: standard deviations of abilities (0.3) and of
  difficulties (1.3); `students_differ=1` is shorthand for 1.3 and 0.3, so that students
  differ more than concepts.
- `two_concept_share` s: each concept has a fixed partner concept, and each attempt is,
  with probability s, an item that practises both. Its answer needs both (conjunctive):
  it is drawn with `guess + (1 - guess - slip) * m_a * m_b`, and both concepts get the
  learning gain (each with its own learning rate). The data keep one concept per
  interaction (pyKT's `concepts` column holds the primary concept a); the partner b
  appears in the truth only (`true_second_concept`, -1 for a one-concept item).

Besides the answers, the simulator keeps the truth of every interaction: `true_mastery`
(of the answered concept, before answering), `true_prob` (the probability the answer was
drawn with), `true_gain` (the rise of the answered concept's true mastery that the
interaction caused) and `true_mastery_all` [N, C] float32, the true mastery of every
concept before the interaction: N x C x 4 bytes, 18 MB for the default simulator
(about 92,000 interactions x 50 concepts, test split included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .errors import DataError
from .memory import check_fits
from .sequences import Dataset, Sequences

FOLDS = 5
RUN_STREAK = 3  # ASSISTments skill builders end after three correct answers in a row
# `students_differ=1`: students differ more than concepts (the default is the other way round)
STUDENTS_DIFFER = {"ability_spread": 1.3, "difficulty_spread": 0.3}


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape of the simulated population; `synthetic:students=2000,concepts=50,seed=0` style."""

    students: int = 2000
    concepts: int = 50
    seed: int = 0
    test: int | None = None  # further students for the test split; default a quarter of `students`
    length: int = 24  # median interactions per student; the tail is log-normal
    max_length: int = 600
    run_cap: int = 10
    guess: float = 0.2
    slip: float = 0.1
    forgetting: float = 0.0  # decay rate of true mastery towards its floor, per interaction in between
    ability_spread: float = 0.3  # standard deviation of the students' abilities
    difficulty_spread: float = 1.3  # standard deviation of the concepts' difficulties
    two_concept_share: float = 0.0  # share of attempts whose item practises a second concept too

    def __post_init__(self) -> None:
        for name, low in (("students", FOLDS), ("concepts", 2), ("test", 0), ("length", 3), ("run_cap", 1)):
            if getattr(self, name) is not None and getattr(self, name) < low:
                raise DataError(f"{self.spec}: '{name}' must be at least {low}, got {getattr(self, name)}")
        if self.max_length < self.length:
            raise DataError(f"{self.spec}: 'max_length' must be at least 'length' ({self.length})")
        if not (0 <= self.guess and 0 <= self.slip and self.guess + self.slip < 1):
            raise DataError(f"{self.spec}: 'guess' and 'slip' must be >= 0 with guess + slip < 1")
        for name in ("forgetting", "ability_spread", "difficulty_spread"):
            if not getattr(self, name) >= 0:
                raise DataError(f"{self.spec}: '{name}' must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.two_concept_share <= 1:
            raise DataError(
                f"{self.spec}: 'two_concept_share' must be in [0, 1], got {self.two_concept_share}"
            )

    def memory_estimate(self) -> float:
        """Bytes the simulation holds at its peak, about: each student's state per concept (three
        8-byte arrays) and the truth of every concept at every interaction (4 bytes each), the
        interactions counted at the log-normal lengths' mean."""
        students = self.students + self.test_students
        interactions = students * min(self.max_length, self.length * math.exp(0.9**2 / 2))
        return float(self.concepts) * (24 * students + 4 * interactions)

    @property
    def spec(self) -> str:
        changed = [
            f"{f.name}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name) != f.default
        ]
        return "synthetic" + (":" + ",".join(changed) if changed else "")

    @classmethod
    def parse(cls, source: str) -> SyntheticConfig:
        """Read `synthetic` or `synthetic:key=value,...`; an unknown key or bad value is a DataError.

        The preset `students_differ=1` sets `ability_spread=1.3,difficulty_spread=0.3`; keys given
        explicitly win over it; `students_differ=0` changes nothing.
        """
        _, _, rest = source.partition(":")
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}  # typed by the fields below
        preset: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in rest.split(","))):
            key, sep, text = item.partition("=")
            key = key.strip()
            if sep and key == "students_differ":
                if text.strip() not in ("0", "1"):
                    raise DataError(f"{source}: students_differ={text!r} is not 0 or 1")
                preset = dict(STUDENTS_DIFFER) if text.strip() == "1" else {}
                continue
            if not sep or key not in types:
                known = ", ".join([*types, "students_differ"])
                raise DataError(f"{source}: unknown setting {item!r} (known: {known})")
            number = float if "float" in types[key] else int
            try:
                values[key] = number(text)
            except ValueError:
                raise DataError(
                    f"{source}: {key}={text!r} is not {'a number' if number is float else 'an integer'}"
                ) from None
        return cls(**{**preset, **values})

    @property
    def test_students(self) -> int:
        return self.students // 4 if self.test is None else self.test


def simulate(config: SyntheticConfig, num_concepts: int | None = None) -> Dataset:
    """Simulate the population; deterministic by `config.seed`."""
    if num_concepts is not None and num_concepts != config.concepts:
        raise DataError(
            f"{config.spec}: num_concepts={num_concepts} differs from the simulator's "
            f"concepts={config.concepts}"
        )
    size = f"{config.students + config.test_students:,} students, {config.concepts:,} concepts"
    check_fits(config.spec, config.memory_estimate(), size)
    rng = np.random.default_rng(config.seed)
    # Draws for the options come from a second generator, so the main stream is the original's.
    extra = np.random.default_rng([config.seed, 1])
    world = _World.draw(config, rng, extra)
    total = config.students + config.test_students
    lengths = np.clip(np.rint(rng.lognormal(np.log(config.length), 0.9, total)), 3, config.max_length).astype(
        np.int64
    )
    trace = _practise(config, world, lengths, rng, extra)

    folds = rng.permutation(np.arange(config.students) % FOLDS)
    all_folds = np.concatenate([folds, np.full(config.test_students, -1)])
    starts = np.cumsum(lengths) - lengths
    population = Sequences(
        concepts=trace.concepts,
        responses=trace.responses,
        starts=starts,
        lengths=lengths,
        folds=all_folds,
        students=np.arange(total),
        uids=tuple(f"s{i:06d}" for i in range(total)),
        true_mastery=trace.mastery,
        true_prob=trace.prob,
        true_gain=trace.gain,
        true_mastery_all=trace.mastery_all,
        true_second_concept=trace.second,
    )
    is_train = np.arange(total) < config.students
    test = population.subset(~is_train) if config.test_students else None
    return Dataset(
        source=config.spec,
        num_concepts=config.concepts,
        train_valid=population.subset(is_train),
        train_valid_file=config.spec,
        test=test,
        test_file=config.spec if test is not None else None,
    )


@dataclass(frozen=True)
class _World:
    ability: np.ndarray  # [students]
    difficulty: np.ndarray  # [concepts]
    learn_rate: np.ndarray  # [concepts]
    popularity: np.ndarray  # [concepts], probabilities of picking a concept for the next run
    partner: np.ndarray  # [concepts], the second concept of a two-concept item, never the concept itself

    @classmethod
    def draw(cls, config: SyntheticConfig, rng: np.random.Generator, extra: np.random.Generator) -> _World:
        concepts = np.arange(config.concepts)
        return cls(
            # By default abilities spread less than difficulties: a student's ability is the one
            # thing a model must infer from that student's own short history (median 24 answers),
            # which the Bayes-optimal AUC of the true probabilities never has to do.
            ability=rng.normal(0.0, config.ability_spread, config.students + config.test_students),
            difficulty=rng.normal(0.0, config.difficulty_spread, config.concepts),
            learn_rate=rng.uniform(0.05, 0.3, config.concepts),
            popularity=rng.dirichlet(np.full(config.concepts, 0.7)),
            partner=(concepts + extra.integers(1, config.concepts, config.concepts)) % config.concepts,
        )


@dataclass(frozen=True)
class _Trace:
    """Flat per-interaction arrays, student after student."""

    concepts: np.ndarray  # int64 [N]
    responses: np.ndarray  # int64 [N]
    mastery: np.ndarray  # float64 [N], of the answered concept, before answering
    prob: np.ndarray  # float64 [N], the probability the answer was drawn with
    gain: np.ndarray  # float64 [N], rise of the answered concept's mastery caused by the interaction
    mastery_all: np.ndarray  # float32 [N, C], of every concept, before answering
    second: np.ndarray  # int64 [N], second concept of a two-concept item, -1 for one concept


def _practise(
    config: SyntheticConfig,
    world: _World,
    lengths: np.ndarray,
    rng: np.random.Generator,
    extra: np.random.Generator,
) -> _Trace:
    """Step all students forward together and record what happened and the truth behind it."""
    n = len(lengths)
    floor = _sigmoid(1.7 * (world.ability[:, None] - world.difficulty[None, :]) - 0.3)  # [n, C]
    mastery = floor.copy()  # just after the last practice (forgetting applies from there)
    last = np.full(mastery.shape, -1, dtype=np.int64)  # step of the last practice, -1 for none

    def current(who: np.ndarray, what: np.ndarray | slice, t: int) -> np.ndarray:
        """True mastery at step t, before answering, of students `who` for concepts `what`."""
        if not config.forgetting:
            return mastery[who, what]
        kept = np.exp(-config.forgetting * (t - 1 - last[who, what]))
        return floor[who, what] + (mastery[who, what] - floor[who, what]) * kept

    speed = np.clip(np.exp(0.3 * world.ability), 0.5, 2.0)  # faster learners
    concept = rng.choice(config.concepts, size=n, p=world.popularity)
    streak = np.zeros(n, dtype=np.int64)
    run = np.zeros(n, dtype=np.int64)
    steps = int(lengths.max())
    out_c = np.zeros((n, steps), dtype=np.int64)
    out_r = np.zeros((n, steps), dtype=np.int64)
    out_m = np.zeros((n, steps))
    out_p = np.zeros((n, steps))
    out_g = np.zeros((n, steps))
    out_s = np.full((n, steps), -1, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    out_all = np.zeros((int(lengths.sum()), config.concepts), dtype=np.float32)
    rows = np.arange(n)
    for t in range(steps):
        active = rows[lengths > t]
        out_all[starts[active] + t] = current(active, slice(None), t)
        m = current(rows, concept, t)
        learned = m  # the mastery that answers the item
        if config.two_concept_share:
            two = extra.random(n) < config.two_concept_share
            second = world.partner[concept]
            m2 = current(rows, second, t)
            learned = np.where(two, m * m2, m)
            out_s[:, t] = np.where(two, second, -1)
        p = config.guess + (1.0 - config.guess - config.slip) * learned
        correct = rng.random(n) < p
        out_c[:, t], out_r[:, t], out_m[:, t], out_p[:, t] = concept, correct, m, p
        factor = np.where(correct, 1.0, 0.5)
        gain = np.minimum(0.9, world.learn_rate[concept] * speed) * factor
        mastery[rows, concept] = m + gain * (1.0 - m)  # moves towards 1, never down
        out_g[:, t] = mastery[rows, concept] - m
        last[rows, concept] = t
        if config.two_concept_share:
            both = rows[two]
            b, mb = second[two], m2[two]
            gain_b = np.minimum(0.9, world.learn_rate[b] * speed[both]) * factor[two]
            mastery[both, b] = mb + gain_b * (1.0 - mb)
            last[both, b] = t
        streak = np.where(correct, streak + 1, 0)
        run += 1
        done = (streak >= RUN_STREAK) | (run >= config.run_cap)
        fresh = rng.choice(config.concepts, size=n, p=world.popularity)
        concept = np.where(done, fresh, concept)
        streak = np.where(done, 0, streak)
        run = np.where(done, 0, run)
    real = np.arange(steps)[None, :] < lengths[:, None]
    return _Trace(
        concepts=out_c[real],
        responses=out_r[real],
        mastery=out_m[real],
        prob=out_p[real],
        gain=out_g[real],
        mastery_all=out_all,
        second=out_s[real],
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
