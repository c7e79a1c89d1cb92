"""UCB1 bandit over proposal kinds (multi-armed bandits).

``select`` scores each proposal by the UCB1 value of its kind and returns the best one; ties are broken with
``rng``. Rewards come from ``history``: 1 for a kept trial, 0 otherwise, minus ``fail_penalty`` for a failed
trial (crash, timeout, nan, ...). Only the last ``window`` records count (0 = all), so the bandit follows a
search whose best moves change over time.

With ``split_kinds`` = 1 a kind such as ``"lr,warmup"`` is scored as the mean UCB of its components
(``lr`` and ``warmup``), so combinations that were never tried still inherit what is known of their parts;
a kind without commas (a mechanism family at level 2) is a single arm either way. An arm never tried scores
``unseen_bonus`` above every tried arm, so each kind is explored once before exploitation starts.
"""
import math

from recur.core.mechanism_api import Mechanism


def _arms(kind, split):
    if not isinstance(kind, str):
        kind = str(kind)
    if not split:
        return [kind]
    parts = []
    for part in kind.split(","):
        part = part.strip()
        if part and part not in parts:
            parts.append(part)
    if not parts:
        return [kind]
    return parts


def _reward(record, fail_penalty):
    status = record.get("status")
    if status != "ok" and status != "running":
        return -fail_penalty
    if record.get("kept") is True:
        return 1.0
    return 0.0


class UcbBandit(Mechanism):
    """Pick the proposal whose kind has the highest UCB1 score, learnt from kept/failed trials in history."""

    PARAMS = {
        "exploration": 1.0,
        "window": 200,
        "split_kinds": 1,
        "fail_penalty": 0.25,
        "unseen_bonus": 1000.0,
    }

    def select(self, proposals, history, rng):
        p = self.PARAMS
        window = int(p.get("window", 200))
        split = int(p.get("split_kinds", 1))
        penalty = float(p.get("fail_penalty", 0.25))
        c = float(p.get("exploration", 1.0))
        bonus = float(p.get("unseen_bonus", 1000.0))
        records = history
        if window > 0:
            records = history[-window:]
        counts = {}
        sums = {}
        total = 0
        for record in records:
            if not isinstance(record, dict) or record.get("status") == "running":
                continue
            reward = _reward(record, penalty)
            total += 1
            for arm in _arms(record.get("kind", ""), split):
                counts[arm] = counts.get(arm, 0) + 1
                sums[arm] = sums.get(arm, 0.0) + reward
        log_total = math.log(max(total, 1))
        scores = []
        for proposal in proposals:
            kind = ""
            if isinstance(proposal, dict):
                kind = proposal.get("kind", "")
            values = []
            for arm in _arms(kind, split):
                n = counts.get(arm, 0)
                if n == 0:
                    values.append(bonus)
                else:
                    values.append(sums[arm] / n + c * math.sqrt(2.0 * log_total / n))
            scores.append(sum(values) / len(values))
        best = max(scores)
        ties = [i for i in range(len(proposals)) if scores[i] >= best - 1e-12]
        return proposals[rng.choice(ties)]
