"""Model-backed proposal backends: level 1 asks for parameter edits (or a diff), outer levels run the paper's
explore -> critique -> specify -> generate stages. Prompts are the template files in ``levels/prompts/``.

The embedded offline model answers under JSON-schema grammars (so level-1 answers always parse and stay in
range), and at outer levels it only *specifies* a mechanism (family + parameters + diagnosis); recur renders
the source from the family's template. A capable model also *generates* the module source itself. Either
way the source then goes through the same gate.

Both backends offer K proposals per step (``proposals``, default 3) from one answering call, so a
mechanism's ``filter``/``select`` hooks have something to decide. Offline, the grammar also keeps the K
answers apart (disjoint parameter groups at level 1, disjoint family groups above): the 135M model otherwise
repeats its first answer.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template
from typing import Any

from recur.core.edits import EditError, coerce
from recur.core.llm import LLMClient, cut_section, parse_json

PROMPTS = Path(__file__).parent / "prompts"
HOOK_API = ("guide(context)->context; propose(context, rng)->[proposal]; filter(proposals, history)->subset; "
            "select(proposals, history, rng)->one proposal; accept(outcome, history, rng)->bool")


def prompt(name: str, **values: Any) -> str:
    return Template((PROMPTS / f"{name}.md").read_text()).safe_substitute({k: str(v) for k, v in values.items()})


def value_schema(spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec.get("type", "float")
    if kind == "choice":
        return {"enum": list(spec["choices"])}
    if kind == "bool":
        return {"type": "boolean"}
    return {"type": "integer" if kind == "int" else "number", "minimum": spec["low"], "maximum": spec["high"]}


def level1_item_schema(space: dict[str, dict[str, Any]], names: list[str], allow_diff: bool,
                       reason_chars: int = 120) -> dict[str, Any]:
    """One level-1 proposal: 1-3 ``{name, value}`` changes (or, for capable models, a diff) and a reason."""
    items = [{"type": "object", "properties": {"name": {"const": n}, "value": value_schema(space[n])},
              "required": ["name", "value"]} for n in names]
    props: dict[str, Any] = {"changes": {"type": "array", "minItems": 0 if allow_diff else 1, "maxItems": 3,
                                         "items": {"anyOf": items}},
                             "reason": {"type": "string", "maxLength": reason_chars}}
    if allow_diff:
        props["diff"] = {"type": "string"}
    return {"type": "object", "properties": props, "required": ["changes", "reason"]}


def level1_schema(space: dict[str, dict[str, Any]], names: list[str], allow_diff: bool, proposals: int = 1,
                  reason_chars: int = 120, groups: list[list[str]] | None = None) -> dict[str, Any]:
    """``{"proposals": [...]}`` with exactly ``proposals`` items (a llama.cpp grammar for the offline model).

    With ``groups`` (disjoint name lists, one per item) item j may change only names of ``groups[j]``
    (``prefixItems``), so the K items are different edits by construction."""
    if groups:
        arr: dict[str, Any] = {"type": "array", "minItems": len(groups), "maxItems": len(groups), "items": False,
                               "prefixItems": [level1_item_schema(space, g, allow_diff, reason_chars) for g in groups]}
    else:
        arr = {"type": "array", "minItems": proposals, "maxItems": proposals,
               "items": level1_item_schema(space, names, allow_diff, reason_chars)}
    return {"type": "object", "properties": {"proposals": arr}, "required": ["proposals"]}


def name_groups(names: list[str], k: int, seed: int, variants: int = 16) -> list[list[str]]:
    """``names`` split into min(k, len(names)) disjoint groups, shuffled by ``seed`` (one of ``variants``
    shuffles, so the offline model's grammar cache stays small)."""
    import random

    shuffled = sorted(names)
    random.Random(f"level1-groups-{seed % variants}").shuffle(shuffled)
    g = max(1, min(k, len(shuffled)))
    return [sorted(shuffled[j::g]) for j in range(g)]


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v)


def _clamp(value: Any, spec: dict[str, Any]) -> Any:
    """A number clamped into its parameter's [low, high] (other values as they are)."""
    if spec.get("type", "float") not in ("float", "int") or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    low, high = spec.get("low"), spec.get("high")
    if low is not None and value < low:
        return low
    if high is not None and value > high:
        return high
    return value


def _items(data: Any, key: str, marker: str) -> list[Any]:
    """The answer's list under ``key``; a bare list, or a single object carrying ``marker`` (a model that
    answered the one-proposal format), counts as that list."""
    if isinstance(data, dict) and key in data:
        data = data[key]
    elif isinstance(data, dict) and marker in data:
        data = [data]
    if not isinstance(data, list) or not data:
        raise ValueError(f'give a non-empty "{key}" list')
    return data


class Level1LLMBackend:
    """Level 1 through the LLM client: K proposals from one call (``{"proposals": [...]}`` with exactly K
    items), re-asked with the error when an item does not fit. Items repeating an earlier item are dropped."""

    OFFLINE_REASON_CHARS = 60  # the 135M model's reasons carry little; shorter ones keep K answers fast

    def __init__(self, client: LLMClient, level: int = 1, proposals: int = 3):
        self.client = client
        self.level = level
        self.proposals = max(1, int(proposals))
        self.name = client.config.model

    def generate(self, context: dict[str, Any], seed: int, trial_id: str) -> list[dict[str, Any]]:
        k = self.proposals
        space = context["space"]
        frozen = set(context.get("frozen", []))
        names = [n for n in sorted(space) if n not in frozen]
        incumbent = context.get("incumbent", {})
        params = "\n".join(f"- {n}: {s.get('type')} "
                           + (f"{s['choices']}" if s.get("type") == "choice" else f"[{_fmt(s.get('low'))}, {_fmt(s.get('high'))}]")
                           + f" — {_fmt(incumbent.get(n))}" for n, s in sorted(space.items()) if n not in frozen)
        rows = []
        for h in context.get("history", [])[-20:]:
            edits = (h.get("payload") or {}).get("params") or {}
            metric = "-" if h.get("metric") is None else f"{h['metric']:.4f}"
            rows.append(f"{', '.join(f'{k}={_fmt(v)}' for k, v in edits.items()) or 'baseline'} -> {metric} {h.get('status')}"
                        + (" kept" if h.get("kept") else ""))
        allow_diff = not self.client.offline
        # The 135M model tends to repeat one edit K times; offline, item j may change only the names of a
        # seeded group j, so the K edits differ by construction. Capable models choose freely.
        groups = name_groups(names, k, seed) if self.client.offline and k > 1 and len(names) > 1 else None
        split = ("\n" + "\n".join(f"Edit {j + 1} changes only: {', '.join(g)}." for j, g in enumerate(groups))
                 if groups else "")
        text = prompt("level1", metric_name=context.get("metric_name", "metric"), task=context.get("task", ""),
                      params=params, best="-" if context.get("best_metric") is None else f"{context['best_metric']:.4f}",
                      frozen=f"Frozen (do not change): {', '.join(sorted(frozen))}" if frozen else "",
                      guidance="Guidance: " + " ".join(context["guidance"]) if context.get("guidance") else "",
                      history=cut_section("history", "\n".join(rows) or "(none yet)"), k=k,
                      edits="edit" if k == 1 else f"{k} different edits",
                      items=f"{len(groups or [None] * k)} item" + ("s" if len(groups or [None] * k) > 1 else ""),
                      split=split)
        if allow_diff and context.get("source"):
            text += prompt("level1_code", editable=context.get("editable", "train.py"),
                           source=cut_section("source", context["source"], keep="head"))
        schema = level1_schema(space, names, allow_diff, k,
                               self.OFFLINE_REASON_CHARS if self.client.offline else 120, groups)

        # The offline grammar cannot bound numbers (and offline_model.clamp_to_schema does not reach values
        # under the changes' anyOf), so offline answers are clamped into range here, as outer specs are;
        # a capable model's out-of-range value is re-asked.
        clamp = self.client.offline

        def parse_one(data: Any, where: str) -> dict[str, Any]:
            if not isinstance(data, dict):
                raise ValueError(f"{where} must be an object with changes and reason")
            edits: dict[str, Any] = {}
            for ch in data.get("changes") or []:
                name = ch.get("name") if isinstance(ch, dict) else None
                if name not in space or name in frozen:
                    raise ValueError(f"{where}: {name!r} is not an editable parameter; choose from {', '.join(names)}")
                value = ch.get("value")
                if clamp:
                    value = _clamp(value, space[name])
                try:
                    edits[name] = coerce(name, value, space[name])
                except EditError as exc:
                    raise ValueError(f"{where}: {exc}") from None
            diff = data.get("diff") if allow_diff else None
            if not edits and not diff:
                raise ValueError(f"{where}: no change proposed: give at least one {{name, value}} change")
            return {"params": edits, "diff": diff or None, "reason": str(data.get("reason", ""))[:200]}

        def parse(raw: str) -> list[dict[str, Any]]:
            items = _items(parse_json(raw), "proposals", "changes")
            out: list[dict[str, Any]] = []
            seen: list[tuple[str, Any]] = []
            for i, item in enumerate(items[:k]):
                value = parse_one(item, f"proposal {i + 1}")
                key = (json.dumps(value["params"], sort_keys=True, default=str), value["diff"])
                if key not in seen:  # a repeat of an earlier item adds nothing for the hooks to decide
                    seen.append(key)
                    out.append(value)
            return out

        reply = self.client.complete([{"role": "user", "content": text}], level=self.level, purpose="propose",
                                     json_schema=schema, parse=parse, seed=seed, trial_id=trial_id)
        proposals = []
        for value in reply.value:
            payload: dict[str, Any] = {"params": value["params"]}
            if value.get("diff"):
                payload["diff"] = value["diff"]
            kind = ",".join(sorted(value["params"])) or "diff"
            proposals.append({"kind": kind, "payload": payload, "rationale": value["reason"]})
        return proposals


def specs_schema(allowed: list[str], k: int, tags: list[str], groups: list[list[str]] | None = None) -> dict[str, Any]:
    """``{"specs": [...]}`` with exactly ``k`` mechanism specs, each one variant (family const, its bounded
    parameters, a diagnosis tag) of the ``allowed`` families; with ``groups``, spec j is one of ``groups[j]``."""
    from recur.mechanism_store.builtin import BUILTIN_FAMILIES

    variants = {}
    for fam in allowed:
        spec = BUILTIN_FAMILIES[fam]
        props = {p: value_schema({"type": s["type"], "low": s["low"], "high": s["high"]}) for p, s in spec["params"].items()}
        variants[fam] = {"type": "object", "properties": {
            "family": {"const": fam}, "params": {"type": "object", "properties": props, "required": sorted(props)},
            "diagnosis": {"enum": list(tags)}}, "required": ["family", "params", "diagnosis"]}
    if groups:
        arr: dict[str, Any] = {"type": "array", "minItems": k, "maxItems": k, "items": False,
                               "prefixItems": [{"anyOf": [variants[f] for f in g]} for g in groups]}
    else:
        arr = {"type": "array", "minItems": k, "maxItems": k, "items": {"anyOf": list(variants.values())}}
    return {"type": "object", "properties": {"specs": arr}, "required": ["specs"]}


def family_groups(allowed: list[str], k: int, seed: int, tags: set[str], families: dict[str, Any],
                  variants: int = 16) -> list[list[str]]:
    """``allowed`` split into ``k`` disjoint non-empty groups (needs len(allowed) >= k), by one of
    ``variants`` seeded shuffles; within a group the families answering ``tags`` come first."""
    import random

    order = sorted(allowed)
    random.Random(f"outer-groups-{seed % variants}").shuffle(order)
    fits = lambda f: bool(tags & set(families.get(f, {}).get("answers", [])))  # noqa: E731
    return [sorted(order[j::k], key=lambda f: not fits(f)) for j in range(k)]


def _code_block(raw: str) -> str:
    m = re.search(r"```(?:python)?\s*\n(.*?)```", raw, re.S)
    return (m.group(1) if m else raw).strip() + "\n"


class OuterLLMBackend:
    """Levels >= 2: explore, critique, specify (grammar-constrained), and, for capable models, generate.

    The specify stage returns K mechanism specs from one call (``{"specs": [...]}``, exactly K items). Its
    grammar limits each spec's family to the families not yet evaluated in this run while any remain (all
    families otherwise); a spec whose (family, params) repeats one already evaluated, or an earlier spec of
    the same reply, is dropped, and a reply left with none is re-asked. Each proposal's rationale names the
    rule that applied.

    The generate stage (capable models only) is one call per returned spec, so every proposal the level's
    hooks may select carries model-written code. It costs up to K code generations (each gated, with its
    re-asks) per outer step; an outer step then spends whole child windows evaluating the chosen one, so the
    generations are a small part of its cost.
    """

    FREE_TEXT_TOKENS = 160  # explore/critique are cut to 400/300 characters: more tokens would be wasted

    def __init__(self, client: LLMClient, level: int, gate_source=None, proposals: int = 3):
        self.client = client
        self.level = level
        self.name = client.config.model
        self.gate_source = gate_source
        self.proposals = max(1, int(proposals))
        self._clients: dict[int, LLMClient] = {}

    def _client_for(self, max_tokens: int | None) -> LLMClient:
        """The client, or a copy of it with a smaller answer budget (same model, same accounting)."""
        if max_tokens is None or max_tokens >= self.client.config.max_tokens:
            return self.client
        if max_tokens not in self._clients:
            from dataclasses import replace

            self._clients[max_tokens] = LLMClient(replace(self.client.config, max_tokens=max_tokens),
                                                  on_call=self.client.on_call)
        return self._clients[max_tokens]

    def _ask(self, text: str, purpose: str, trial_id: str, seed: int, max_tokens: int | None = None, **kw: Any):
        return self._client_for(max_tokens).complete([{"role": "user", "content": text}], level=self.level,
                                                     purpose=purpose, seed=seed, trial_id=trial_id, **kw)

    def generate(self, context: dict[str, Any], seed: int, trial_id: str) -> list[dict[str, Any]]:
        from recur.levels.backends import evaluated, spec_key
        from recur.mechanism_store.builtin import BUILTIN_FAMILIES, builtin_source, validate_params
        from recur.mechanism_store.gate import gate

        k = self.proposals
        families = {f: s for f, s in context["families"].items() if f in BUILTIN_FAMILIES}
        diag = context.get("diagnosis", {})
        child = self.level - 1
        child_what = "edits of the task's training script" if child == 1 else f"mechanisms for level {child - 1}"
        history = context.get("history", [])
        tried_families, done = evaluated(history, families)
        untried = [f for f in families if f not in tried_families]
        allowed = untried or list(families)
        rule = "untried families only" if untried else "all families tried; new parameters"
        tried = ", ".join(f"{h['kind']}: {h['metric'] if h.get('metric') is not None else '-'} {h.get('status')}"
                          for h in history[-8:]) or "none"
        summary = json.dumps({k: v for k, v in diag.items() if k != "level"})
        free = self.FREE_TEXT_TOKENS if self.client.offline else None
        explore = self._ask(prompt("outer_explore", child_level=child, child_what=child_what, hook_api=HOOK_API,
                                   summary=summary, tried=tried), "explore", trial_id, seed,
                            max_tokens=free).text.strip()[:400]
        critique = self._ask(prompt("outer_critique", explore=explore, summary=summary), "critique", trial_id,
                             seed, max_tokens=free).text.strip()[:300]
        fam_lines = "\n".join(f"- {f}: {s['hooks']}, {s['summary']} answers {s['answers']}"
                              for f, s in families.items() if f in allowed)
        # The 135M model picks the first families its grammar lists, the same ones every time. Offline, spec j
        # chooses from a seeded group j of the allowed families (those answering the diagnosis listed first),
        # so one reply names K different families whenever K are allowed. Capable models choose freely.
        groups = (family_groups(allowed, k, seed, set(diag.get("tags") or []), families)
                  if self.client.offline and k > 1 and len(allowed) >= k else None)
        schema = specs_schema(allowed, k, list(diag.get("tags") or ["stagnation"]), groups)
        split = ("\n" + "\n".join(f"Spec {j + 1} chooses from: {', '.join(g)}." for j, g in enumerate(groups))
                 if groups else "")
        dropped: list[str] = []

        def parse_specs(raw: str) -> list[dict[str, Any]]:
            items = _items(parse_json(raw), "specs", "family")
            out: list[dict[str, Any]] = []
            seen = set(done)
            dropped.clear()
            for i, data in enumerate(items[:k]):
                where = f"spec {i + 1}"
                if not isinstance(data, dict):
                    raise ValueError(f"{where} must be an object with family, params and diagnosis")
                fam = data.get("family")
                if fam not in families:
                    raise ValueError(f"{where}: unknown family {fam!r}; choose one of {', '.join(allowed)}")
                given = data.get("params") or {}
                if not isinstance(given, dict):
                    raise ValueError(f"{where}: params must be an object")
                given = dict(given)
                for name, rng_spec in BUILTIN_FAMILIES[fam]["params"].items():  # grammars cannot bound floats: clamp
                    if isinstance(given.get(name), (int, float)) and not isinstance(given.get(name), bool):
                        given[name] = min(rng_spec["high"], max(rng_spec["low"], given[name]))
                try:
                    params = validate_params(fam, given)
                except (KeyError, ValueError) as exc:
                    raise ValueError(f"{where}: {exc}") from None
                key = spec_key(fam, params)
                if key in seen:  # already evaluated in this run, or repeated in this reply
                    dropped.append(f"{fam} {'(evaluated)' if key in done else '(repeated)'}")
                    continue
                seen.add(key)
                out.append({"family": fam, "params": params, "diagnosis": str(data.get("diagnosis", ""))})
            if not out:
                raise ValueError("every spec repeats a mechanism already evaluated in this run (same family and "
                                 "parameters): change the parameters" + (f" or choose from {', '.join(untried)}"
                                                                         if untried else ""))
            return out

        specs = self._ask(prompt("outer_specify", explore=explore, critique=critique, families=fam_lines, k=k,
                                 mechanisms="one mechanism" if k == 1 else f"{k} different mechanisms",
                                 tried_families=", ".join(tried_families) or "none", allowed=", ".join(allowed),
                                 split=split),
                          "specify", trial_id, seed, json_schema=schema, parse=parse_specs).value
        proposals = []
        for spec in specs:
            fam_rule = rule
            if untried and spec["family"] not in untried:  # a model that ignored the schema's family limit
                fam_rule = f"untried families only, but the model chose the tried {spec['family']}; new parameters"
            params = {"family": spec["family"], **{f"{spec['family']}.{n}": v for n, v in spec["params"].items()}}
            rationale = f"{spec['diagnosis']} [{fam_rule}"
            rationale += f"; dropped repeats: {', '.join(dropped)}]" if dropped else "]"
            rationale += f": {explore[:160]}"
            proposal = {"kind": spec["family"], "payload": {"params": params}, "rationale": rationale}
            if not self.client.offline:
                proposal = self._generate_code(proposal, spec, trial_id, seed, gate, builtin_source)
            proposals.append(proposal)
        return proposals

    def _generate_code(self, proposal: dict[str, Any], spec: dict[str, Any], trial_id: str, seed: int, gate,
                       builtin_source) -> dict[str, Any]:
        def parse_code(raw: str) -> str:
            source = _code_block(raw)
            report = gate(source, max_examples=10, seed=seed % 1000)
            if not report.passed:
                raise ValueError("the module failed the gate:\n" + report.summary())
            return source

        try:
            code = self._ask(prompt("outer_generate", spec=json.dumps(spec), template=builtin_source(spec["family"])),
                             "generate", trial_id, seed, parse=parse_code).value
            proposal["payload"]["source"] = code
        except Exception as exc:  # re-asks exhausted: the rendered template stands in, and the trace says why
            proposal["rationale"] += f" (generated code rejected: {str(exc)[:200]}; rendered the family template)"
        return proposal
