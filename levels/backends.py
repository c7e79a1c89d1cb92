"""Which proposal backend and hook invoker a run uses, chosen from ``--model``.

``scripted`` is the non-LLM baseline (seeded local search); every other model string goes through the
LLM client (litellm), ``offline`` being the embedded SmolLM2 model.

Every backend offers ``proposals`` (K, default 3) candidates per step at every level, so that a mechanism's
``filter``/``select`` hooks have something to decide between.
"""
from __future__ import annotations

from typing import Any, Callable

import math
import random
import statistics

from recur.core.policy import ScriptedBackend, perturb

DEFAULT_PROPOSALS = 3


# ------------------------------------------------------------------------------ what a run has evaluated
def _defaults(family: str) -> dict[str, Any]:
    try:
        from recur.mechanism_store.builtin import BUILTIN_FAMILIES
    except Exception:  # noqa: BLE001 - the store is optional for this helper
        return {}
    spec = BUILTIN_FAMILIES.get(family)
    return {k: p["default"] for k, p in spec["params"].items()} if spec else {}


def _norm(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return float(f"{float(value):.10g}")


def spec_key(family: str, params: dict[str, Any]) -> tuple[str, tuple]:
    """Identity of a mechanism spec: its family and that family's parameters (defaults filled in, numbers as
    floats). ``params`` may be keyed ``family.param`` (a level's payload) or bare ``param`` (a spec)."""
    prefix = family + "."
    own = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
    own.update({k: v for k, v in params.items() if "." not in k and k != "family"})
    full = {**_defaults(family), **own}
    return family, tuple(sorted((k, _norm(v)) for k, v in full.items()))


def evaluated(history: list[dict[str, Any]], families: Any) -> tuple[list[str], set[tuple[str, tuple]]]:
    """(families tried in this run, in order of first trial; the (family, params) keys evaluated).

    A history record is a family's trial when its ``kind`` is a family name; its parameters are read from
    ``payload.params`` (``family.param`` keys). Records that carry no parameters of their family (ports of a
    lower level's mechanism) count as a tried family but not as an evaluated parameter set.
    """
    tried: list[str] = []
    keys: set[tuple[str, tuple]] = set()
    for h in history:
        fam = h.get("kind")
        if fam not in families:
            continue
        if fam not in tried:
            tried.append(fam)
        params = (h.get("payload") or {}).get("params") or {}
        if any(str(k).startswith(fam + ".") for k in params):
            keys.add(spec_key(fam, params))
    return tried, keys


# ------------------------------------------------------------------------------ the scripted baselines
def rank_families(tried: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Each tried family's best try, families ordered by a seeded Thompson draw around their mean score
    (normal, the pooled spread of all scores over the square root of the family's tries).

    Ranking by the best single score locked the search onto whichever family had one lucky (noisy) screen
    and perturbed it for the rest of the run; the draw keeps trying families whose few scores are close."""
    scored: dict[str, list[float]] = {}
    best: dict[str, dict[str, Any]] = {}
    for h in tried:
        m = h.get("metric")
        fam = h["kind"]
        if m is not None and math.isfinite(m):
            scored.setdefault(fam, []).append(float(m))
            if best.get(fam) is None or best[fam].get("metric") is None or m > best[fam]["metric"]:
                best[fam] = h
        else:
            best.setdefault(fam, h)
    values = [m for ms in scored.values() for m in ms]
    spread = statistics.pstdev(values) if len(values) > 1 else 0.0

    def draw(fam: str) -> float:
        ms = scored.get(fam)
        if not ms:
            return float("-inf")
        return statistics.fmean(ms) + rng.gauss(0.0, spread / math.sqrt(len(ms)))

    order = sorted(best, key=lambda f: (draw(f), f), reverse=True)
    return [best[f] for f in order]


class ScriptedMechanismBackend:
    """The scripted baseline above level 1; seeded, no model. Returns K distinct specs per step: untried
    families (with their defaults) that answer the trace diagnosis first, then the other untried families, then perturbations of
    the best-scoring tried family's parameters (then of the next best). A (family, params) pair already in
    the history is never proposed again."""

    name = "scripted"

    def __init__(self, proposals: int = DEFAULT_PROPOSALS):
        self.n = max(1, int(proposals))

    def generate(self, context: dict[str, Any], seed: int, trial_id: str) -> list[dict[str, Any]]:
        rng = random.Random(seed)
        families = context["families"]
        space = context["space"]
        incumbent = dict(context.get("incumbent") or {})
        tags = set(context.get("diagnosis", {}).get("tags", []))
        history = context.get("history", [])
        tried_names, seen = evaluated(history, families)
        tried = [h for h in history if h.get("kind") in families]
        untried = [f for f in sorted(families) if f not in tried_names]
        fitting = [f for f in untried if tags & set(families[f]["answers"])]
        others = [f for f in untried if f not in fitting]
        out: list[dict[str, Any]] = []

        def add(family: str, point: dict[str, Any], why: str, tries: int = 40, first_as_is: bool = False) -> bool:
            names = sorted(n for n in space if n.startswith(family + "."))
            for attempt in range(tries):
                params = dict(point)
                k = min(len(names), 2 + attempt // 10)
                if not (first_as_is and attempt == 0):  # an untried family is tried with its defaults first
                    for name in rng.sample(names, k=k):
                        params[name] = perturb(space, point, name, rng, scale=1.0 + attempt / 10)
                key = spec_key(family, params)
                if key not in seen:
                    seen.add(key)
                    out.append({"kind": family, "payload": {"params": params}, "rationale": f"scripted: {family} {why}"})
                    return True
            return False

        for group in (fitting, others):
            group = list(group)
            while group and len(out) < self.n:  # seeded order within each group (the first pick as before K)
                family = group.pop(group.index(rng.choice(group)))
                answered = ", ".join(sorted(tags & set(families[family]["answers"])))
                defaults = {f"{family}.{k}": v for k, v in _defaults(family).items()}
                add(family, {**incumbent, **defaults, "family": family},
                    f"answers {answered}; untried family" if answered else "untried family; exploration",
                    first_as_is=True)
        bests = rank_families(tried, rng)
        for best in bests:
            family = best["kind"]
            point = {**incumbent, **((best.get("payload") or {}).get("params") or {}), "family": family}
            metric = best.get("metric")
            why = f"perturbs the best tried family ({'-' if metric is None else f'{metric:.4g}'}); new parameters"
            while len(out) < self.n and add(family, point, why):
                pass
            if len(out) >= self.n:
                break
        if not out:  # nothing new could be found (tiny spaces): the old move, recorded as a repeat
            family = (bests[0]["kind"] if bests else sorted(families)[0])
            point = {**incumbent, "family": family}
            names = sorted(n for n in space if n.startswith(family + "."))
            params = dict(point)
            for name in rng.sample(names, k=min(len(names), 2)):
                params[name] = perturb(space, point, name, rng)
            out.append({"kind": family, "payload": {"params": params},
                        "rationale": f"scripted: {family} (no unevaluated parameters found)"})
        return out


def fallback_backend(level: int, proposals: int = DEFAULT_PROPOSALS) -> Any:
    """What proposes when the model gave no usable answer after its re-asks: the scripted move (recorded as such)."""
    return ScriptedBackend(proposals) if level == 1 else ScriptedMechanismBackend(proposals)


def offline_max_tokens(proposals: int, level: int = 1) -> int:
    """Answer tokens for the embedded model: enough for K grammar-constrained answers plus the JSON wrapper.
    Measured: a level-1 proposal takes 25-75 tokens (K=3: 180-220), an outer spec of the largest family
    (tabu, 8 parameters) up to ~130 (K=3: 270-395)."""
    return 40 + (120 if level == 1 else 180) * max(1, proposals)


def backend_factory(opts: Any, trace: Any, run_id: str, budget: Any) -> Callable[[int], Any]:
    """level -> the proposal backend of that level; model calls are traced and charged to the run's budget."""
    proposals = max(1, int(getattr(opts, "proposals", DEFAULT_PROPOSALS) or DEFAULT_PROPOSALS))

    def make(level: int) -> Any:
        model = opts.level_models.get(str(level), opts.model)
        if model == "scripted":
            return ScriptedBackend(proposals) if level == 1 else ScriptedMechanismBackend(proposals)
        from recur.core.llm import LLMClient, LLMConfig
        from recur.levels.llm_backends import Level1LLMBackend, OuterLLMBackend

        def on_call(call: dict) -> None:
            trace.record_llm_call(run_id, call)
            budget.charge({"tokens": (call.get("prompt_tokens") or 0) + (call.get("completion_tokens") or 0),
                              "usd": call.get("cost_usd") or 0.0})

        # hosted models: one module or K level-1 answers (diffs included); 4096 is the smallest output cap
        # among common providers
        max_tokens = offline_max_tokens(proposals, level) if model == "offline" else min(4096, 1500 + 800 * (proposals - 1))
        client = LLMClient(LLMConfig(model=model, api_base=opts.api_base, max_tokens=max_tokens,
                                     timeout_s=opts.llm_timeout), on_call=on_call)
        if level == 1:
            return Level1LLMBackend(client, proposals=proposals)
        return OuterLLMBackend(client, level, proposals=proposals)

    return make
