"""Benchmark the embedded offline model (SmolLM2-135M, llama.cpp) as level 1 uses it.

Prints: import times (llama_cpp, litellm), model load time, and the latency of one level-1 proposal — a
realistic ~600-token prompt (role, current hyperparameters, recent trial history, instructions) answered with
a grammar-constrained JSON edit of ~40 tokens — as the median over N calls with different seeds through the
whole ``LLMClient`` path (litellm custom provider, parsing, accounting). llama.cpp's own timers split each
call into prompt evaluation, token evaluation, and the rest (sampling under the grammar, Python, litellm). Figures depend heavily on other load on the CPU
(llama.cpp's threads slow down badly when the cores are shared); the load average is printed with them.

    python bench/bench_offline_model.py [--calls 10] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

PARAMS = {
    "learning_rate": 0.003, "weight_decay": 0.1, "warmup_steps": 50, "batch_size": 16,
    "n_layer": 4, "n_embd": 256, "n_head": 4, "dropout": 0.0,
}

SCHEMA = {
    "type": "object",
    "properties": {
        "param": {"type": "string", "enum": sorted(PARAMS)},
        "op": {"type": "string", "enum": ["set", "scale"]},
        "value": {"type": "number", "minimum": 0, "maximum": 4096},
        "reason": {"type": "string", "maxLength": 80},
    },
    "required": ["param", "op", "value", "reason"],
    "additionalProperties": False,
}


def level1_prompt() -> list[dict[str, str]]:
    history = []
    bpb = 3.52
    for i in range(8):
        p = sorted(PARAMS)[i % len(PARAMS)]
        bpb_new = bpb - 0.01 * ((i * 7) % 5 - 2)
        status = "keep" if bpb_new < bpb else "discard"
        history.append(f"| {i + 1:2d} | {p:13s} | scale x{1.5 if i % 2 else 0.7} | val_bpb {bpb_new:.4f} | {status} |")
        bpb = min(bpb, bpb_new)
    params = "\n".join(f"- {k} = {v}" for k, v in PARAMS.items())
    system = (
        "You are an autonomous machine-learning researcher. You improve the training script of a small GPT "
        "language model trained on English text for a fixed wall-clock budget of 30 seconds on a CPU. The score "
        "is val_bpb (validation bits per byte, lower is better), measured by a pinned evaluator you cannot change. "
        "Each turn you propose exactly one edit to one hyperparameter; the edit is trained, evaluated and kept "
        "only if it beats the best score by more than the noise floor (two standard deviations of repeated "
        "baseline runs). Prefer edits that have not been tried, and move in directions that helped before. "
        "Keep the model small enough to train within the budget: the time limit is strict and a trial that runs "
        "over it is discarded."
    )
    user = (
        f"Current best val_bpb: {bpb:.4f} (noise floor 0.012).\n\nCurrent hyperparameters of train.py:\n{params}\n\n"
        "Recent trials (oldest first):\n| # | param | edit | result | status |\n"
        + "\n".join(history)
        + "\n\nObservations: learning-rate changes gave the largest gains so far; width above 384 ran over the "
        "time budget twice; dropout has never been changed; warmup changes were neutral.\n\n"
        "Propose one edit as JSON with keys param (one of the names above), op (set = new value, scale = multiply "
        "the current value), value (the new value or the factor) and reason (a short phrase)."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]

    t0 = time.perf_counter()
    import llama_cpp

    t_llama_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    from recur.core.llm import LLMClient, LLMConfig
    from recur.core.llm_errors import litellm_module as _litellm

    _litellm()
    t_litellm_import = time.perf_counter() - t0

    from recur.core import offline_model

    t0 = time.perf_counter()
    offline_model.get_model()
    t_load = time.perf_counter() - t0

    messages = level1_prompt()
    client = LLMClient(LLMConfig(model="offline", max_tokens=96, temperature=0.7))
    client.complete(messages, level=1, purpose="warmup", json_schema=SCHEMA, seed=999)  # grammar build, first call

    ctx = offline_model.get_model()._ctx.ctx
    wall, cpu, ptoks, ctoks, answers, t_prompt, t_gen = [], [], [], [], [], [], []
    for seed in range(args.calls):
        llama_cpp.llama_perf_context_reset(ctx)
        c0 = time.process_time()
        r = client.complete(messages, level=1, purpose="propose", json_schema=SCHEMA, seed=seed)
        cpu.append(time.process_time() - c0)
        perf = llama_cpp.llama_perf_context(ctx)  # llama.cpp's own timers: prompt evaluation, token evaluation
        t_prompt.append(perf.t_p_eval_ms / 1000)
        t_gen.append(perf.t_eval_ms / 1000)
        wall.append(r.latency_s)
        ptoks.append(r.prompt_tokens)
        ctoks.append(r.completion_tokens)
        answers.append(r.text)

    med = statistics.median
    result = {
        "threads_generation_batch": [offline_model.N_THREADS, offline_model.N_THREADS_BATCH],
        "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "llama_cpp_import_s": round(t_llama_import, 3),
        "litellm_import_s": round(t_litellm_import, 3),
        "model_load_s": round(t_load, 3),
        "calls": args.calls,
        "prompt_tokens": med(ptoks),
        "completion_tokens_median": med(ctoks),
        "latency_median_s": round(med(wall), 3),
        "latency_min_s": round(min(wall), 3),
        "latency_max_s": round(max(wall), 3),
        "cpu_median_s": round(med(cpu), 3),
        "prompt_eval_median_s": round(med(t_prompt), 3),
        "prompt_eval_tokens_per_s": round(med(p / t for p, t in zip(ptoks, t_prompt)), 1),
        "token_eval_median_s": round(med(t_gen), 3),
        "token_eval_tokens_per_s": round(med(c / t for c, t in zip(ctoks, t_gen)), 1),
        "sampling_grammar_overhead_median_s": round(med(w - p - g for w, p, g in zip(wall, t_prompt, t_gen)), 3),
        "distinct_answers": len(set(answers)),
        "example": answers[0],
    }
    if args.json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k:26s} {v}")


if __name__ == "__main__":
    main()
