"""The built-in dataset `synthetic`: simulated students whose true mastery is known.

Each student has an ability; each concept a difficulty and a learning rate. A
student practises one concept at a time in skill-builder runs (until three
correct answers in a row, or at most `run_cap` attempts) and then moves to
another concept. True mastery starts from ability minus difficulty, grows with
every attempt (more after a correct answer) and never drops; the response is
drawn with probability `guess + (1 - guess - slip) * mastery`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .data import Dataset, Sequences
from .errors import DataError

FOLDS = 5
RUN_STREAK = 3  # ASSISTments skill builders end after three correct answers in a row


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

    def __post_init__(self) -> None:
        for name, low in (("students", FOLDS), ("concepts", 2), ("test", 0), ("length", 3), ("run_cap", 1)):
            if getattr(self, name) is not None and getattr(self, name) < low:
                raise DataError(f"{self.spec}: '{name}' must be at least {low}, got {getattr(self, name)}")
        if self.max_length < self.length:
            raise DataError(f"{self.spec}: 'max_length' must be at least 'length' ({self.length})")
        if not (0 <= self.guess and 0 <= self.slip and self.guess + self.slip < 1):
            raise DataError(f"{self.spec}: 'guess' and 'slip' must be >= 0 with guess + slip < 1")

    @property
    def spec(self) -> str:
        changed = [
            f"{f.name}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name) != f.default
        ]
        return "synthetic" + (":" + ",".join(changed) if changed else "")

    @classmethod
    def parse(cls, source: str) -> SyntheticConfig:
        """Read `synthetic` or `synthetic:key=value,...`; an unknown key or bad value is a DataError."""
        _, _, rest = source.partition(":")
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}  # typed by the fields below
        for item in filter(None, (part.strip() for part in rest.split(","))):
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or key not in types:
                raise DataError(f"{source}: unknown setting {item!r} (known: {', '.join(types)})")
            number = float if "float" in types[key] else int
            try:
                values[key] = number(text)
            except ValueError:
                raise DataError(
                    f"{source}: {key}={text!r} is not {'a number' if number is float else 'an integer'}"
                ) from None
        return cls(**values)

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
    rng = np.random.default_rng(config.seed)
    world = _World.draw(config, rng)
    total = config.students + config.test_students
    lengths = np.clip(np.rint(rng.lognormal(np.log(config.length), 0.9, total)), 3, config.max_length).astype(
        np.int64
    )
    concepts, responses, mastery, prob = _practise(config, world, lengths, rng)

    folds = rng.permutation(np.arange(config.students) % FOLDS)
    all_folds = np.concatenate([folds, np.full(config.test_students, -1)])
    starts = np.cumsum(lengths) - lengths
    population = Sequences(
        concepts=concepts,
        responses=responses,
        starts=starts,
        lengths=lengths,
        folds=all_folds,
        students=np.arange(total),
        uids=tuple(f"s{i:06d}" for i in range(total)),
        true_mastery=mastery,
        true_prob=prob,
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

    @classmethod
    def draw(cls, config: SyntheticConfig, rng: np.random.Generator) -> _World:
        return cls(
            # Abilities spread less than difficulties: a student's ability is the one thing a model
            # must infer from that student's own short history (median 24 answers), which the
            # Bayes-optimal AUC of the true probabilities never has to do.
            ability=rng.normal(0.0, 0.3, config.students + config.test_students),
            difficulty=rng.normal(0.0, 1.3, config.concepts),
            learn_rate=rng.uniform(0.05, 0.3, config.concepts),
            popularity=rng.dirichlet(np.full(config.concepts, 0.7)),
        )


def _practise(
    config: SyntheticConfig, world: _World, lengths: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Step all students forward together; returns flat concepts, responses, true mastery and probability."""
    n = len(lengths)
    mastery = _sigmoid(1.7 * (world.ability[:, None] - world.difficulty[None, :]) - 0.3)  # [n, C]
    speed = np.clip(np.exp(0.3 * world.ability), 0.5, 2.0)  # faster learners
    concept = rng.choice(config.concepts, size=n, p=world.popularity)
    streak = np.zeros(n, dtype=np.int64)
    run = np.zeros(n, dtype=np.int64)
    steps = int(lengths.max())
    out_c = np.zeros((n, steps), dtype=np.int64)
    out_r = np.zeros((n, steps), dtype=np.int64)
    out_m = np.zeros((n, steps))
    out_p = np.zeros((n, steps))
    rows = np.arange(n)
    for t in range(steps):
        m = mastery[rows, concept]
        p = config.guess + (1.0 - config.guess - config.slip) * m
        correct = rng.random(n) < p
        out_c[:, t], out_r[:, t], out_m[:, t], out_p[:, t] = concept, correct, m, p
        gain = np.minimum(0.9, world.learn_rate[concept] * speed) * np.where(correct, 1.0, 0.5)
        mastery[rows, concept] = m + gain * (1.0 - m)  # moves towards 1, never down
        streak = np.where(correct, streak + 1, 0)
        run += 1
        done = (streak >= RUN_STREAK) | (run >= config.run_cap)
        fresh = rng.choice(config.concepts, size=n, p=world.popularity)
        concept = np.where(done, fresh, concept)
        streak = np.where(done, 0, streak)
        run = np.where(done, 0, run)
    real = np.arange(steps)[None, :] < lengths[:, None]
    return out_c[real], out_r[real], out_m[real], out_p[real]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
