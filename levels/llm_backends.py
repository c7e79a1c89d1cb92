"""Model-backed proposal backends: level 1 asks for parameter edits (or a diff), outer levels run the paper's
explore -> critique -> specify -> generate stages. Prompts are the template files in ``levels/prompts/``.

The embedded offline model answers under JSON-schema grammars (so level-1 answers always parse and stay in
range), and at outer levels it only *specifies* a mechanism (family + parameters + diagnosis); recur renders
the source from the family's template. A capable model also *generates* the module source itself. Either
way the source then goes through the same gate.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template
from typing import Any

from recur.core.edits import EditError, coerce
from recur.core.llm import LLMClient, cut_section

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


def level1_schema(space: dict[str, dict[str, Any]], names: list[str], allow_diff: bool) -> dict[str, Any]:
    items = [{"type": "object", "properties": {"name": {"const": n}, "value": value_schema(space[n])},
              "required": ["name", "value"]} for n in names]
    props: dict[str, Any] = {"changes": {"type": "array", "minItems": 0 if allow_diff else 1, "maxItems": 3,
                                         "items": {"anyOf": items}},
                             "reason": {"type": "string", "maxLength": 120}}
    if allow_diff:
        props["diff"] = {"type": "string"}
    return {"type": "object", "properties": props, "required": ["changes", "reason"]}


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v)


class Level1LLMBackend:
    """Level 1 through the LLM client: one call per proposal, re-asked with the error when it does not fit."""

    def __init__(self, client: LLMClient, level: int = 1):
        self.client = client
        self.level = level
        self.name = client.config.model

    def generate(self, context: dict[str, Any], seed: int, trial_id: str) -> list[dict[str, Any]]:
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
        text = prompt("level1", metric_name=context.get("metric_name", "metric"), task=context.get("task", ""),
                      params=params, best="-" if context.get("best_metric") is None else f"{context['best_metric']:.4f}",
                      frozen=f"Frozen (do not change): {', '.join(sorted(frozen))}" if frozen else "",
                      guidance="Guidance: " + " ".join(context["guidance"]) if context.get("guidance") else "",
                      history=cut_section("history", "\n".join(rows) or "(none yet)"))
        if allow_diff and context.get("source"):
            text += prompt("level1_code", editable=context.get("editable", "train.py"),
                           source=cut_section("source", context["source"], keep="head"))
        schema = level1_schema(space, names, allow_diff)

        def parse(raw: str) -> dict[str, Any]:
            data = json.loads(_json_block(raw))
            edits: dict[str, Any] = {}
            for ch in data.get("changes") or []:
                name = ch.get("name")
                if name not in space or name in frozen:
                    raise ValueError(f"{name!r} is not an editable parameter; choose from {', '.join(names)}")
                try:
                    edits[name] = coerce(name, ch.get("value"), space[name])
                except EditError as exc:
                    raise ValueError(str(exc)) from None
            diff = data.get("diff") if allow_diff else None
            if not edits and not diff:
                raise ValueError("no change proposed: give at least one {name, value} change")
            return {"params": edits, "diff": diff, "reason": str(data.get("reason", ""))[:200]}

        reply = self.client.complete([{"role": "user", "content": text}], level=self.level, purpose="propose",
                                     json_schema=schema, parse=parse, seed=seed, trial_id=trial_id)
        value = reply.value
        payload: dict[str, Any] = {"params": value["params"]}
        if value.get("diff"):
            payload["diff"] = value["diff"]
        kind = ",".join(sorted(value["params"])) or "diff"
        return [{"kind": kind, "payload": payload, "rationale": value["reason"]}]


def _json_block(raw: str) -> str:
    m = re.search(r"```(?:json)?\s*(\{.*\})\s*```", raw, re.S)
    return m.group(1) if m else raw.strip()


def _code_block(raw: str) -> str:
    m = re.search(r"```(?:python)?\s*\n(.*?)```", raw, re.S)
    return (m.group(1) if m else raw).strip() + "\n"


class OuterLLMBackend:
    """Levels >= 2: explore, critique, specify (grammar-constrained), and, for capable models, generate."""

    def __init__(self, client: LLMClient, level: int, gate_source=None):
        self.client = client
        self.level = level
        self.name = client.config.model
        self.gate_source = gate_source

    def _ask(self, text: str, purpose: str, trial_id: str, seed: int, max_tokens: int | None = None, **kw: Any):
        return self.client.complete([{"role": "user", "content": text}], level=self.level, purpose=purpose,
                                    seed=seed, trial_id=trial_id, **kw)

    def generate(self, context: dict[str, Any], seed: int, trial_id: str) -> list[dict[str, Any]]:
        from recur.mechanism_store.builtin import BUILTIN_FAMILIES, builtin_source, validate_params
        from recur.mechanism_store.gate import gate

        families = context["families"]
        diag = context.get("diagnosis", {})
        child = self.level - 1
        child_what = "edits of the task's training script" if child == 1 else f"mechanisms for level {child - 1}"
        tried = ", ".join(f"{h['kind']}: {h['metric'] if h.get('metric') is not None else '-'} {h.get('status')}"
                          for h in context.get("history", [])[-8:]) or "none"
        summary = json.dumps({k: v for k, v in diag.items() if k != "level"})
        explore = self._ask(prompt("outer_explore", child_level=child, child_what=child_what, hook_api=HOOK_API,
                                   summary=summary, tried=tried), "explore", trial_id, seed).text.strip()[:400]
        critique = self._ask(prompt("outer_critique", explore=explore, summary=summary), "critique", trial_id,
                             seed).text.strip()[:300]
        fam_lines = "\n".join(f"- {f}: {s['hooks']}, {s['summary']} answers {s['answers']}" for f, s in families.items())
        variants = []
        for fam, spec in BUILTIN_FAMILIES.items():
            props = {p: value_schema({"type": s["type"], "low": s["low"], "high": s["high"]}) for p, s in spec["params"].items()}
            variants.append({"type": "object", "properties": {
                "family": {"const": fam}, "params": {"type": "object", "properties": props, "required": sorted(props)},
                "diagnosis": {"enum": list(diag.get("tags") or ["stagnation"])}}, "required": ["family", "params", "diagnosis"]})
        schema = {"anyOf": variants}

        def parse_spec(raw: str) -> dict[str, Any]:
            data = json.loads(_json_block(raw))
            fam = data.get("family")
            if fam not in BUILTIN_FAMILIES:
                raise ValueError(f"unknown family {fam!r}; choose one of {', '.join(BUILTIN_FAMILIES)}")
            given = dict(data.get("params") or {})
            for name, rng_spec in BUILTIN_FAMILIES[fam]["params"].items():  # grammars cannot bound floats: clamp
                if isinstance(given.get(name), (int, float)) and not isinstance(given.get(name), bool):
                    given[name] = min(rng_spec["high"], max(rng_spec["low"], given[name]))
            return {"family": fam, "params": validate_params(fam, given),
                    "diagnosis": str(data.get("diagnosis", ""))}

        spec = self._ask(prompt("outer_specify", explore=explore, critique=critique, families=fam_lines),
                         "specify", trial_id, seed, json_schema=schema, parse=parse_spec).value
        params = {"family": spec["family"], **{f"{spec['family']}.{k}": v for k, v in spec["params"].items()}}
        rationale = f"{spec['diagnosis']}: {explore[:160]}"
        proposal = {"kind": spec["family"], "payload": {"params": params}, "rationale": rationale}
        if not self.client.offline:
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
        return [proposal]
