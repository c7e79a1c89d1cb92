"""recur gpt_pretrain trial: train a small GPT for a fixed wall-clock budget, then print val_bpb.

Level 1 edits the UPPER_CASE constants below (one simple literal per line). The data, the sequence length,
the vocabulary and the evaluator come from prepare.py (pinned). The environment sets RECUR_DATA_DIR,
RECUR_SEED, RECUR_TRAIN_SECONDS (the training budget, measured from after model construction and two
warm-up steps) and optionally RECUR_NUM_THREADS (CPU threads, default all cores) and RECUR_DEVICE.

Measured 2026-11-29 (cpu-tiny preset: KJV, byte vocabulary, seq 256, 45 s budget, 256 eval windows) on a shared
2-core AMD EPYC with AVX2 only: no native bf16, and bf16 autocast there ran ~7x slower than fp32, so the CPU
path autocasts only where AVX512-BF16/AMX exist. Load average 1-2 unless noted.
  width 64, depth 2, batch 8, lr 3e-3 (these defaults), 2 threads: 35.6k tok/s, 782 steps, val_bpb 2.159;
      1 thread: 21.2k tok/s, val_bpb 2.448
  same, batch 4, 2 threads: 26.6k tok/s, 1168 steps, val_bpb 2.140; 1 thread: 20.3k tok/s, val_bpb 2.254
  same, lr 6e-3, 1 thread: 22.5k tok/s, val_bpb 2.379
  width 128, depth 3, batch 16, 1 thread: 6.9k tok/s, 77 steps, val_bpb 3.250 (still on the ~3.3 bigram plateau)
  trial wall time 50-58 s: start-up (imports, data, model, 2 warm-up steps) ~4 s, evaluation 0.6-1.3 s.
  With 2 threads and another busy process on the machine, throughput fell 10x (2k tok/s, val_bpb 4.03):
  on a shared 2-core machine set RECUR_NUM_THREADS=1 (task option "threads").
gpu preset on one H200, 2026-12-02 (BPE 8192, seq 2048, depth 8, width 512, batch 64, torch.compile; the corpus is
  the installed packages' Python sources, 109M tokens): 1.69M tok/s, MFU 38.7 % (exact, see the end of main),
  1.02x karpathy/autoresearch's train.py side by side; peak 23 GB; start-up 31 s cold, 14 s with the compile
  cache of an earlier trial; val_bpb 0.677 at 100 s, 0.532 at 300 s (4.6 passes over the corpus).
"""
import time

_STARTED = time.perf_counter()  # process start, for startup_seconds

import math
import os
import resource
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import prepare

# ---- hyperparameters: level 1 edits these -------------------------------------------------------------
DEPTH = 2  # transformer blocks
N_EMBD = 64  # model width
N_HEAD = 2  # attention heads (N_EMBD / N_HEAD must be even)
MLP_RATIO = 4  # MLP hidden width = MLP_RATIO * N_EMBD
ACTIVATION = "relu2"  # "relu2" (squared ReLU), "gelu" or "silu"
TIE_EMBEDDINGS = True  # share the input embedding and the output head
INIT_STD = 0.02  # std of the normal init (output projections are scaled by 1/sqrt(2*DEPTH))
DROPOUT = 0.0
BATCH_SIZE = 8  # sequences per step
LEARNING_RATE = 0.003  # peak AdamW learning rate
WEIGHT_DECAY = 0.1  # on matrices only
BETA1 = 0.9
BETA2 = 0.95
GRAD_CLIP = 1.0  # max global grad norm; 0 disables clipping
WARMUP_FRAC = 0.05  # fraction of the time budget spent warming up linearly
SCHEDULE = "cosine"  # decay after warm-up: "cosine", "linear" or "constant"
MIN_LR_FRAC = 0.1  # final learning rate as a fraction of the peak
COMPILE = False  # torch.compile the training model (pays off on CUDA, not on CPU)
SYNC_EVERY = 25  # CUDA: read the loss (a host-GPU sync) every this many steps
# --------------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """RMS normalisation without a learnt scale: the next linear layer can scale, and the scale's gradient
    reductions cost about 5% of a GPU step (profiled on an H200)."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.rms_norm(x, (self.dim,), eps=1e-6)


def rotary(seq_len, head_dim):
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv)
    return freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]


def apply_rotary(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.head_dim = N_EMBD // N_HEAD
        self.qkv = nn.Linear(N_EMBD, 3 * N_EMBD, bias=False)
        self.proj = nn.Linear(N_EMBD, N_EMBD, bias=False)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, N_HEAD, self.head_dim).unbind(2)
        q = apply_rotary(self.q_norm(q), cos, sin).to(v.dtype)
        k = apply_rotary(self.k_norm(k), cos, sin).to(v.dtype)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
                                           dropout_p=DROPOUT if self.training else 0.0)
        return F.dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)), DROPOUT, self.training)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(N_EMBD, MLP_RATIO * N_EMBD, bias=False)
        self.proj = nn.Linear(MLP_RATIO * N_EMBD, N_EMBD, bias=False)

    def forward(self, x):
        h = self.fc(x)
        if ACTIVATION == "relu2":
            h = F.relu(h).square()
        elif ACTIVATION == "gelu":
            h = F.gelu(h)
        else:
            h = F.silu(h)
        return F.dropout(self.proj(h), DROPOUT, self.training)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.attn = RMSNorm(N_EMBD), Attention()
        self.norm2, self.mlp = RMSNorm(N_EMBD), MLP()

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, seq_len):
        super().__init__()
        cos, sin = rotary(seq_len, N_EMBD // N_HEAD)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.wte = nn.Embedding(vocab_size, N_EMBD)
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))
        self.norm_f = RMSNorm(N_EMBD)
        self.lm_head = nn.Linear(N_EMBD, vocab_size, bias=False)
        if TIE_EMBEDDINGS:
            self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = INIT_STD / math.sqrt(2 * DEPTH) if name.endswith("proj.weight") else INIT_STD
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx, targets=None):
        """Logits, or with ``targets`` the mean cross-entropy (in fp32), computed inside the model so that
        torch.compile fuses the loss with the head instead of materialising fp32 logits outside the graph."""
        T = idx.size(1)
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        x = F.dropout(self.wte(idx), DROPOUT, self.training)
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.lm_head(self.norm_f(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))

    def matmul_params(self):
        """Weights used in matrix products per token: every 2-D weight but the input embedding (a lookup);
        with tied embeddings the shared matrix counts once, as the output head."""
        head = self.lm_head.weight
        return sum(p.numel() for p in self.parameters() if p.dim() == 2 and (p is head or p is not self.wte.weight))


def lr_at(frac):
    if frac < WARMUP_FRAC:
        return LEARNING_RATE * (frac + 1e-3) / WARMUP_FRAC
    p = min(1.0, (frac - WARMUP_FRAC) / max(1e-9, 1.0 - WARMUP_FRAC))
    if SCHEDULE == "cosine":
        scale = MIN_LR_FRAC + (1 - MIN_LR_FRAC) * 0.5 * (1 + math.cos(math.pi * p))
    elif SCHEDULE == "linear":
        scale = 1 - (1 - MIN_LR_FRAC) * p
    else:
        scale = 1.0
    return LEARNING_RATE * scale


def autocast_dtype(device):
    """bf16 on CUDA; on the CPU only where it has native bf16 (AVX512-BF16 or AMX), else fp32.

    On an AVX2-only CPU bf16 matmuls are emulated and about 7x slower than fp32. RECUR_CPU_BF16=1/0 forces it.
    """
    if device.type == "cuda":
        return torch.bfloat16
    forced = os.environ.get("RECUR_CPU_BF16")
    if forced is not None:
        return torch.bfloat16 if forced == "1" else None
    native = any(getattr(torch.cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return torch.bfloat16 if native else None


def peak_memory_gb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1024**3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def main():
    seed = int(os.environ.get("RECUR_SEED", "0"))
    budget = float(os.environ.get("RECUR_TRAIN_SECONDS", "45"))
    torch.set_num_threads(int(os.environ.get("RECUR_NUM_THREADS", "0")) or os.cpu_count() or 1)
    device = torch.device(os.environ.get("RECUR_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(seed)

    data = prepare.load_data()
    T, V = data.seq_len, data.vocab_size
    model = GPT(V, T).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=LEARNING_RATE, betas=(BETA1, BETA2),
                            fused=device.type == "cuda")
    train_model = torch.compile(model) if COMPILE else model
    batches = data.batches(BATCH_SIZE, seed=seed, device=device)
    amp = autocast_dtype(device)
    print(f"device {device} | params {n_params / 1e6:.2f}M | vocab {V} | seq {T} | batch {BATCH_SIZE} | "
          f"budget {budget:.0f}s | threads {torch.get_num_threads()} | autocast {amp}", flush=True)

    def loss_of(x, y):
        with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            return train_model(x, y)

    # two warm-up steps without an update (compilation, allocator), outside the timed budget
    for _ in range(2):
        x, y = next(batches)
        loss_of(x, y).backward()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()

    # Reading the loss (loss.item()) waits for the GPU; on CUDA it is read every SYNC_EVERY steps only, so the
    # host queues the next steps while the GPU works. A non-finite loss is caught at the next read.
    sync_every = 1 if device.type != "cuda" else SYNC_EVERY
    step, tokens, last_log = 0, 0, 0.0
    t0 = time.perf_counter()
    startup_seconds = t0 - _STARTED
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= budget:
            break
        lr = lr_at(elapsed / budget)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = next(batches)
        loss = loss_of(x, y)
        loss.backward()
        if GRAD_CLIP > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens += x.numel()
        if step % sync_every and step > 1:
            continue
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            print(f"step {step}: loss is {loss_value}, stopping", flush=True)
            print("val_bpb: nan", flush=True)
            sys.exit(1)
        if elapsed - last_log >= 5.0 or step == 1:
            last_log = elapsed
            print(f"step {step:5d} | {elapsed:6.1f}s | loss {loss_value:.4f} | lr {lr:.2e} | {tokens / max(elapsed, 1e-9):.0f} tok/s",
                  flush=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - t0
    tokens_per_s = tokens / train_seconds

    t_eval = time.perf_counter()
    val_bpb = prepare.evaluate_bpb(model, data)
    print(f"num_params: {n_params}")
    print(f"num_steps: {step}")
    print(f"train_tokens: {tokens}")
    print(f"startup_seconds: {startup_seconds:.1f}")
    print(f"training_seconds: {train_seconds:.1f}")
    print(f"eval_seconds: {time.perf_counter() - t_eval:.1f}")
    print(f"val_bpb: {val_bpb:.6f}")
    print(f"peak_memory_gb: {peak_memory_gb(device):.3f}")
    print(f"tokens_per_s: {tokens_per_s:.1f}")
    if device.type == "cuda":
        # MFU, exact for this model: training FLOPs per token = 6 * (weights in matrix products: model.matmul_params)
        # + 6 * DEPTH * T * N_EMBD (causal attention: QK^T and AV, 2 * 2 * T * N_EMBD per token and layer forward,
        # halved by the causal mask, times 3 for forward + backward), over the GPU's dense bf16 peak.
        flops_per_token = 6 * model.matmul_params() + 6 * DEPTH * T * N_EMBD
        peak = float(os.environ.get("RECUR_PEAK_FLOPS", "989.5e12"))  # H100/H200 SXM dense bf16
        print(f"mfu: {100 * tokens_per_s * flops_per_token / peak:.2f}")
    sys.exit(0 if math.isfinite(val_bpb) else 1)


if __name__ == "__main__":
    main()
