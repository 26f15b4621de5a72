"""From-scratch ResNet-18 (28x28, MedMNIST small-input form) on PneumoniaMNIST within a time budget.

    python bench/medmnist_resnet.py [--budget 600] [--threads 2] [--bf16]

Target (issue 6): test AUC >= 0.944 (MedMNIST v2, Table 3) within 10 minutes on this CPU.
Protocol as MedMNIST v2 (PAPERS.md 6): Normalize(.5, .5), Adam lr 1e-3, batch 128, the model with the
best validation AUC is kept. Because a CPU epoch takes minutes, validation AUC is checked every
`--eval-every` steps (not only at epoch ends) and the best checkpoint so far is kept; training stops
before the budget runs out. One JSON line per evaluation, then one final line.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medgan_ui.evaluate.classifiers import build_classifier
from medgan_ui.evaluate.stats import auc
from medgan_ui.evaluate.train_classifier import predict

NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist" / "pneumoniamnist.npz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(NPZ))
    ap.add_argument("--budget", type=float, default=600.0, help="seconds, including evaluation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=12, help="steps between validation checks")
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPUs with AVX512-BF16/AMX)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()
    with np.load(args.data) as z:
        x = {p: torch.from_numpy(z[f"{p}_images"].copy()) for p in ("train", "val", "test")}
        y = {p: z[f"{p}_labels"].reshape(-1).astype(np.float32) for p in ("train", "val", "test")}
    model = build_classifier("resnet18", 1, 28).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    xt, yt = x["train"], torch.from_numpy(y["train"])[:, None]
    gen = torch.Generator().manual_seed(args.seed)
    best = {"val_auc": -1.0}
    best_state = copy.deepcopy(model.state_dict())
    step, eval_s, step_s = 0, 0.0, []
    done = False
    for epoch in range(1, args.max_epochs + 1):
        perm = torch.randperm(len(xt), generator=gen)
        for s in range(0, len(perm), args.batch):
            t0 = time.perf_counter()
            idx = perm[s:s + args.batch]
            xb = (xt[idx].unsqueeze(1).float() / 255.0).contiguous(memory_format=torch.channels_last)
            model.train()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                out = model(xb)
            loss = F.binary_cross_entropy_with_logits(out.float(), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            step_s.append(time.perf_counter() - t0)
            last_batch = s + args.batch >= len(perm)
            if step % args.eval_every == 0 or last_batch:
                t1 = time.perf_counter()
                v = auc(y["val"], predict(model, x["val"])[:, 0])
                if v > best["val_auc"]:
                    best = {"val_auc": v, "epoch": epoch, "step": step}
                    best_state = copy.deepcopy(model.state_dict())
                eval_s = time.perf_counter() - t1
                elapsed = time.perf_counter() - t_start
                print(json.dumps({"bench": "medmnist_resnet18", "epoch": epoch, "step": step, "val_auc": round(v, 4),
                                  "loss": round(float(loss.detach()), 4), "elapsed_s": round(elapsed, 1),
                                  "s_per_step": round(float(np.median(step_s[-20:])), 3)}), flush=True)
            elapsed = time.perf_counter() - t_start
            # stop when another eval window (steps + evaluation + final test pass) would overrun the budget
            need = np.median(step_s[-20:]) * args.eval_every + 2.5 * eval_s
            if elapsed + need > args.budget:
                done = True
                break
        if done:
            break
    model.load_state_dict(best_state)
    p_test = predict(model, x["test"])[:, 0]
    test_auc = auc(y["test"], p_test)
    acc = float(((p_test >= 0.5) == (y["test"] > 0.5)).mean())
    total = time.perf_counter() - t_start
    print(json.dumps({"bench": "medmnist_resnet18", "final": True, "test_auc": round(test_auc, 4),
                      "test_acc": round(acc, 4), "best_val_auc": round(best["val_auc"], 4),
                      "best_epoch": best.get("epoch"), "best_step": best.get("step"), "steps": step,
                      "seconds": round(total, 1), "budget_s": args.budget, "threads": args.threads,
                      "bf16": args.bf16, "target_auc": 0.944, "reached": bool(test_auc >= 0.944 and total <= args.budget)}),
          flush=True)


if __name__ == "__main__":
    main()
