"""From model states to the metrics of `gainakt.schema.EvalMetrics`: what each metric looks at,
gathered batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics
from .batching import Batch, BatchPlan
from .schema import MONITOR_METRICS, EvalMetrics
from .sequences import Sequences
from .tracer import SENSITIVITY_STEP, States, Tracer


@dataclass(frozen=True)
class Observations:
    """Per-position arrays over real positions of one or more batches.

    Three families of arrays, each with the window of every entry, so that `resample` can draw
    students: the positions t (keyed by `window`), the pairs (t-1, t) of a window (`pair_window`)
    and the simulator's unpractised (t, k) entries (`unpractised_window`).
    """

    prob: np.ndarray  # p[t]
    next_response: np.ndarray  # r[t+1]
    next_mastery: np.ndarray  # m[t, c[t+1]]
    next_concept: np.ndarray  # c[t+1]
    student: np.ndarray  # student of each position
    window: np.ndarray  # window of each position (a model sees one window at a time)
    practised_gain: np.ndarray  # g[t, c[t]]
    response: np.ndarray  # r[t]
    current_mastery: np.ndarray  # m[t, c[t]], after the answer r[t] was seen
    mastery_before: np.ndarray  # m[t-1, c[t]], positions with a real t-1
    mastery_after: np.ndarray  # m[t, c[t]], same positions
    correct_after: np.ndarray  # r[t], same positions
    pair_window: np.ndarray  # the window of each of those pairs
    negative_gains: np.ndarray  # per position t: entries g[t, k] < -NEG_GAIN_TOLERANCE over the concepts k
    gain_entries: np.ndarray  # per position t: the gain entries g[t, k] (C for a model, 0 for a baseline)
    logit: np.ndarray  # logit p[t]
    residual: np.ndarray  # the part of logit p[t] that bypasses the mastery (all of it for a free head)
    sensitivity: np.ndarray  # mean |change of p[t]| when m[t, c[t+1]] moves by +-0.1 (0: not read)
    # simulator only (None elsewhere): the truth behind the positions above
    next_true_mastery: np.ndarray | None = None  # true mastery of c[t+1] before answering it
    true_gain: np.ndarray | None = None  # rise of c[t]'s true mastery caused by step t (as practised_gain)
    # every (position t, concept k) whose k is not practised in the window up to t, flattened:
    unpractised_mastery: np.ndarray | None = None  # m[t, k]
    unpractised_truth: np.ndarray | None = None  # true mastery of k before step t+1
    unpractised_window: np.ndarray | None = None  # the window of each

    @classmethod
    def of(cls, states: States, batch: Batch) -> Observations:
        return cls.from_tensors(cls.tensors_of(states, batch))

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor | None]) -> Observations:
        """The observations of `tensors_of`'s tensors (of one batch, or several concatenated)."""
        arrays: dict[str, Any] = {k: None if v is None else v.cpu().numpy() for k, v in tensors.items()}
        return cls(**arrays)

    @staticmethod
    def tensors_of(states: States, batch: Batch) -> dict[str, torch.Tensor | None]:
        """The fields of the observations of one batch, as tensors on the batch's device."""
        with torch.no_grad():
            mask = batch.mask
            gains, mastery = states.gains.detach().float(), states.mastery.detach().float()
            at = lambda x, idx: x.gather(-1, idx.unsqueeze(-1)).squeeze(-1)  # noqa: E731  (local helper)
            pairs = mask[:, 1:] & mask[:, :-1]
            answered = batch.concepts[:, 1:]
            students = batch.students.unsqueeze(1).expand_as(mask)
            windows = batch.windows.unsqueeze(1).expand_as(mask)
            logits = states.logits.detach().float()
            residual = logits if states.residual is None else states.residual.detach().float()
            sensitivity = states.mastery_sensitivity
            sensitivity = torch.zeros_like(logits) if sensitivity is None else sensitivity.detach().float()
            unpractised: dict[str, torch.Tensor] = {}
            if batch.next_true_mastery_all is not None:
                concepts = mastery.shape[-1]
                seen = F.one_hot(batch.concepts, concepts).cummax(dim=1).values.bool()  # [B, T, C]
                keep = mask.unsqueeze(-1) & ~seen
                unpractised = {
                    "unpractised_mastery": mastery[keep],
                    "unpractised_truth": batch.next_true_mastery_all[keep],
                    "unpractised_window": windows.unsqueeze(-1).expand_as(keep)[keep],
                }
            return dict(
                prob=torch.sigmoid(logits)[mask],
                next_response=batch.next_responses[mask],
                next_mastery=at(mastery, batch.next_concepts)[mask],
                next_concept=batch.next_concepts[mask],
                student=students[mask],
                window=windows[mask],
                practised_gain=at(gains, batch.concepts)[mask],
                response=batch.responses[mask],
                current_mastery=at(mastery, batch.concepts)[mask],
                mastery_before=at(mastery[:, :-1], answered)[pairs],
                mastery_after=at(mastery[:, 1:], answered)[pairs],
                correct_after=batch.responses[:, 1:][pairs],
                pair_window=windows[:, 1:][pairs],
                negative_gains=(gains < -metrics.NEG_GAIN_TOLERANCE).sum(-1)[mask],
                gain_entries=torch.full_like(mask[mask], gains.shape[-1], dtype=torch.long),
                logit=logits[mask],
                residual=residual[mask],
                sensitivity=sensitivity[mask],
                next_true_mastery=None if batch.next_true_mastery is None else batch.next_true_mastery[mask],
                true_gain=None if batch.true_gain is None else batch.true_gain[mask],
                **unpractised,
            )

    @classmethod
    def from_estimates(
        cls,
        windows: Sequences,
        before: np.ndarray,
        after: np.ndarray,
        unpractised: np.ndarray | None = None,
        num_concepts: int | None = None,
    ) -> Observations:
        """The observations of an estimator with no model inside (a baseline), laid out as a model's.

        `before[i]`: its estimate that interaction i is answered correctly, made before r[i] is seen
        (the mastery of the next concept, and the prediction); `after[i]`: its estimate for the same
        concept once r[i] is seen (the mastery of the concept just answered). Its gain of interaction i
        is what r[i] changed, `after[i] - before[i]`, on the practised concept; its estimate of every
        other concept does not move, so with `num_concepts` (C) a position has C gain entries, all 0
        but that one, and `neg_gain_rate` is the share of them below 0 (without it: no gain entries,
        so no `neg_gain_rate`). Its prediction is its mastery, so nothing bypasses the
        mastery (residual 0) and moving the mastery by +-0.1 moves the prediction as much, clipped to
        [0, 1]. `unpractised[k]` [C]: its estimate for concept k before any practice of k in the
        window (for the simulator's recovery of unpractised concepts).
        """
        flat = windows.positions()  # every interaction, window by window (flat indices)
        window = np.repeat(np.arange(len(windows)), windows.lengths)
        step = np.arange(flat.size) - np.repeat(np.cumsum(windows.lengths) - windows.lengths, windows.lengths)
        predicting = step < np.repeat(windows.lengths, windows.lengths) - 1  # t with a real t+1
        now, nxt = flat[predicting], flat[predicting] + 1  # a window's interactions are contiguous
        is_pair = predicting & (step >= 1)
        paired = flat[is_pair]
        truth = windows.true_mastery
        gain_truth = windows.true_gain
        prob = before[nxt].astype(np.float64)
        up = np.minimum(prob + SENSITIVITY_STEP, 1) - prob
        down = prob - np.maximum(prob - SENSITIVITY_STEP, 0)
        clipped = np.clip(prob, LOGIT_EPS, 1 - LOGIT_EPS)
        return cls(
            prob=before[nxt],
            next_response=windows.responses[nxt],
            next_mastery=before[nxt],
            next_concept=windows.concepts[nxt],
            student=windows.students[window[predicting]],
            window=window[predicting],
            practised_gain=after[now] - before[now],
            response=windows.responses[now],
            current_mastery=after[now],
            mastery_before=before[paired],
            mastery_after=after[paired],
            correct_after=windows.responses[paired],
            pair_window=window[is_pair],
            negative_gains=(after[now] - before[now] < -metrics.NEG_GAIN_TOLERANCE).astype(np.int64)
            if num_concepts
            else np.zeros(now.size, dtype=np.int64),
            gain_entries=np.full(now.size, num_concepts or 0, dtype=np.int64),
            logit=np.log(clipped / (1 - clipped)),
            residual=np.zeros(prob.size),
            sensitivity=(up + down) / 2,
            next_true_mastery=None if truth is None else truth[nxt],
            true_gain=None if gain_truth is None else gain_truth[now],
            **_unpractised_estimates(windows, flat, window, step, predicting, unpractised),
        )

    @classmethod
    def concat(cls, parts: list[Observations]) -> Observations:
        return cls(**_joined([vars(p) for p in parts], np.concatenate))

    def resample(self, students: np.ndarray) -> Observations:
        """The observations of `students` (drawn with repetition, as a bootstrap does): every entry
        of their windows, a student drawn k times counted as k students (window and student ids
        renumbered by draw, so per-student and per-window figures see separate copies)."""
        windows, first = np.unique(self.window, return_index=True)
        index, owner = _entries_of(self.student[first], np.asarray(students))  # each drawn student's windows
        drawn_windows = windows[index]
        grouped = {name for members in _FAMILIES.values() for name in members} | set(_FAMILIES)
        positions = tuple(f.name for f in fields(self) if f.name not in grouped and f.name != "window")
        picked: dict[str, Any] = {}  # as in concat
        for key, members in {"window": positions, **_FAMILIES}.items():
            keys = getattr(self, key)
            if keys is None:
                picked.update({name: None for name in (key, *members)})
                continue
            index, copy = _entries_of(keys, drawn_windows)
            for name in members:
                value = getattr(self, name)
                picked[name] = None if value is None else value[index]
            picked[key] = copy  # the drawn window's number: copies of one window stay apart
        picked["student"] = owner[picked["window"]]
        return Observations(**picked)

    def interpretability(self) -> dict[str, float]:
        """The interpretability metrics the monitor follows (`schema.MONITOR_METRICS`)."""
        entries = int(self.gain_entries.sum())
        values = {
            "mastery_corr": metrics.pearson(self.next_mastery, self.next_response),
            "gain_corr": metrics.pearson(self.practised_gain, self.response),
            "neg_gain_rate": float(self.negative_gains.sum() / entries) if entries else float("nan"),
            "monotonicity_violation_rate": metrics.monotonicity_violation_rate(
                self.mastery_before, self.mastery_after, self.correct_after
            ),
        }
        return {name: values[name] for name in MONITOR_METRICS}


def _joined(parts: Sequence[Mapping[str, Any]], join: Callable[[list[Any]], Any]) -> dict[str, Any]:
    """The fields of `parts` (of several batches), each joined end to end by `join`, or None where a
    part has none (the simulator's truth, on real data)."""
    return {
        name: None if any(part[name] is None for part in parts) else join([part[name] for part in parts])
        for name in parts[0]
    }


# The families of `Observations` arrays beside the positions by the field holding the window of
# their entries (every other field is per position, keyed by `window`).
_FAMILIES: dict[str, tuple[str, ...]] = {
    "pair_window": ("mastery_before", "mastery_after", "correct_after"),
    "unpractised_window": ("unpractised_mastery", "unpractised_truth"),
}


def _entries_of(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the entries whose key is each of `wanted` in turn (repeats included), and for
    each the position in `wanted` it was drawn at."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.searchsorted(sorted_keys, wanted, side="left")
    counts = np.searchsorted(sorted_keys, wanted, side="right") - starts
    copy = np.repeat(np.arange(wanted.size), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return order[np.repeat(starts, counts) + offsets], copy


def _unpractised_estimates(
    windows: Sequences,
    flat: np.ndarray,
    window: np.ndarray,
    step: np.ndarray,
    predicting: np.ndarray,
    estimate: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """`Observations`' unpractised fields of a per-concept `estimate` [C] at the predicting positions
    of the windows' interactions `flat` (each with its window and step); none without the
    simulator's full truth or without an estimate."""
    if windows.true_mastery_all is None or estimate is None:
        return {}
    concepts = windows.true_mastery_all.shape[1]
    first = np.full((len(windows), concepts), np.iinfo(np.int64).max)  # first step practising k
    np.minimum.at(first, (window, windows.concepts[flat]), step)
    at = window[predicting]
    unseen = first[at] > step[predicting][:, None]  # [positions, C]: k not practised at steps 0..t
    return {
        "unpractised_mastery": np.broadcast_to(estimate[:concepts], unseen.shape)[unseen],
        "unpractised_truth": windows.true_mastery_all[flat[predicting] + 1][unseen],
        "unpractised_window": at[np.nonzero(unseen)[0]],
    }


LOGIT_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] before a log or a logit
MIN_CONCEPT_POSITIONS = 20  # mastery_pred_corr: concepts with fewer positions are left out
MIN_ATTEMPTS = 6  # prospective_corr: (window, concept) pairs with fewer attempts are left out


def eval_metrics(obs: Observations, baseline_mastery_corr: float = float("nan")) -> EvalMetrics:
    """Every metric of `EvalMetrics` from the observations of one split; `mastery_lift` needs the best
    baseline's `mastery_corr` on the same split (NaN without)."""
    p = np.clip(obs.prob.astype(np.float64), LOGIT_EPS, 1 - LOGIT_EPS)
    y = obs.next_response
    loss = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()) if y.size else float("nan")
    interpretability = obs.interpretability()
    return EvalMetrics(
        loss=loss,
        auc=metrics.roc_auc(y, obs.prob),
        acc=metrics.accuracy(y, obs.prob),
        pred_corr=metrics.pearson(obs.prob, y),
        mastery_corr_student=metrics.per_student_pearson(obs.next_mastery, y, obs.student),
        **recovery_metrics(obs),
        positions=int(y.size),
        mastery_pred_corr=metrics.per_group_pearson(
            obs.next_mastery, obs.prob, obs.next_concept, MIN_CONCEPT_POSITIONS
        ),
        mastery_lift=interpretability["mastery_corr"] - baseline_mastery_corr,
        copy_corr=metrics.pearson(obs.current_mastery, obs.response),
        mastery_saturation=metrics.saturation(obs.next_mastery),
        prospective_corr=metrics.prospective_correlation(
            obs.next_mastery, y, metrics.pair_keys(obs.window, obs.next_concept), MIN_ATTEMPTS
        ),
        faithfulness=float(obs.sensitivity.astype(np.float64).mean()) if y.size else float("nan"),
        residual_share=residual_share(obs.residual, obs.logit),
        **interpretability,
    )


def recovery_metrics(obs: Observations) -> dict[str, float]:
    """The simulator's recovery figures (NaN where the data have no truth): the model's mastery and
    gains against the true ones."""
    nan = float("nan")
    truth, gains = obs.next_true_mastery, obs.true_gain
    unpractised, unpractised_truth = obs.unpractised_mastery, obs.unpractised_truth
    return {
        "mastery_recovery": nan if truth is None else metrics.pearson(obs.next_mastery, truth),
        "mastery_recovery_within": nan
        if truth is None
        else metrics.per_group_pearson(obs.next_mastery, truth, obs.next_concept, MIN_CONCEPT_POSITIONS),
        "gain_recovery": nan if gains is None else metrics.pearson(obs.practised_gain, gains),
        "unpractised_recovery": nan
        if unpractised is None or unpractised_truth is None
        else metrics.pearson(unpractised, unpractised_truth),
    }


def residual_share(residual: np.ndarray, logit: np.ndarray) -> float:
    """mean |residual| / mean |logit|: 0 when the mastery path carries the whole logit, 1 when none of
    it (a free head's whole logit is its residual); NaN without positions or with every logit 0."""
    scale = float(np.abs(logit.astype(np.float64)).mean()) if logit.size else 0.0
    return float(np.abs(residual.astype(np.float64)).mean()) / scale if scale > 0 else float("nan")


@torch.no_grad()
def observe(model: Tracer, plan: BatchPlan, device: torch.device | str = "cpu") -> Observations:
    """The model's observations on every window of `plan` (in eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    parts = []  # kept on the device, concatenated there and copied to the host once
    for batch in plan.batches(0):
        batch = batch.to(device)
        parts.append(Observations.tensors_of(model.forward_with_states(batch), batch))
    model.train(was_training)
    return Observations.from_tensors(_joined(parts, torch.cat))


def evaluate(
    model: Tracer,
    plan: BatchPlan,
    device: torch.device | str = "cpu",
    baseline_mastery_corr: float = float("nan"),
) -> EvalMetrics:
    """All metrics of the model on every window of `plan`; `mastery_lift` against
    `baseline_mastery_corr`, the best baseline's on the same windows."""
    return eval_metrics(observe(model, plan, device), baseline_mastery_corr)
