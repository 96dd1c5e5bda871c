"""The demo: the embedded default model, end to end on CPU in a few minutes.

1. WVS answers: the bundled question catalog, culture-unaware vs. culture-aware. Without human data it shows
   how much culture-aware prompting moves the model's answers; with human data (``--wvs`` /
   ``--distributions``) it also scores both settings against the real figures.
2. CLCA in miniature: a few seed scenarios adapted to two cultures, role-played, judged and annotated with
   intents by the same model; a short LoRA run of :class:`CLCATrainer` on the result; then the evaluator on
   the base model vs. the adapter (culture-aware prompts), with a comparison plot.
3. With human data: training on whole answer distributions (:class:`AnswerDistributionTrainer`) on a
   held-out-items split of the demo cultures, through the experiment harness: held-out KL before and after, next
   to the uniform distribution, the position prior and the same training with shuffled culture labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluation import WVSEvaluator
from .models import DEFAULT_MODEL, load_model_and_tokenizer
from .wvs import WVSData, bundled_questions

__all__ = ["run_demo", "run_clca_demo", "run_distribution_demo", "answer_shift_table"]

DEMO_CULTURES = ("USA", "CHN", "DEU")
CLCA_DEMO_CULTURES = ("GBR", "CHN")


def answer_shift_table(answers, cultures: list[str]) -> str:
    """Markdown: per culture, how culture-aware answers differ from culture-unaware ones.

    Columns: items, share of items whose argmax answer changes, mean JS distance (nats) between the two
    distributions, and mean entropy (nats) of each setting's distributions.
    """
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import entropy

    base = {r["qid"]: r for r in answers if r["setting"] == "culture-unaware"}
    lines = ["| culture | items | answer changed | JS(aware, unaware) | entropy unaware | entropy aware |",
             "|---|---|---|---|---|---|"]
    for culture in cultures:
        aware = [r for r in answers if r["setting"] == "culture-aware" and r["culture"] == culture]
        pairs = [(base[r["qid"]], r) for r in aware if r["model_probs"] and base[r["qid"]]["model_probs"]]
        if not pairs:
            continue
        changed = np.mean([a["model_code"] != u["model_code"] for u, a in pairs])
        js = np.mean([jensenshannon(u["model_probs"], a["model_probs"]) for u, a in pairs])
        hu = np.mean([entropy(u["model_probs"]) for u, _ in pairs])
        ha = np.mean([entropy(a["model_probs"]) for _, a in pairs])
        lines.append(f"| {culture} | {len(pairs)} | {changed:.0%} | {js:.3f} | {hu:.3f} | {ha:.3f} |")
    return "\n".join(lines) + "\n"


def run_demo(output_dir: str | Path = "demo-output", model_name: str = DEFAULT_MODEL,
             cultures: tuple[str, ...] = DEMO_CULTURES, wvs: WVSData | None = None,
             batch_size: int = 16, clca: bool = True) -> dict:
    """Run the demo and write ``answer_shift.md`` (+ the evaluation report when ``wvs`` is given), then the
    CLCA miniature (:func:`run_clca_demo`) unless ``clca=False``.

    Returns:
        ``{"answer_shift": markdown, "report": WVSReport | None, "clca": dict | None}``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_model_and_tokenizer(model_name)
    catalog = bundled_questions()
    if wvs is None:
        data = WVSData(questions=catalog, distributions={}, source="bundled catalog (no human data)")
    else:
        shared = [q for q in catalog if q in wvs.questions]
        data = wvs.select(qids=shared)
    evaluator = WVSEvaluator(model, tokenizer, data, cultures=list(cultures), batch_size=batch_size,
                             settings=("culture-unaware", "culture-aware"), model_name=model_name)
    answers = evaluator.model_answers()
    answers.to_parquet(str(out / "answers.parquet"))
    shift = answer_shift_table(answers, list(cultures))
    (out / "answer_shift.md").write_text(shift)
    print(f"\nHow culture-aware prompting moves {model_name}'s answers ({len(data.questions)} catalog items):\n")
    print(shift)
    report = None
    if wvs is not None:
        report = evaluator.evaluate(out / "eval")
        print(f"Alignment with the human figures of {wvs.source}:\n")
        print(report.to_markdown())
        print(f"Report, tables and plots written to {out / 'eval'}")
    else:
        print("No human data given (--wvs / --distributions): alignment scores skipped.")
    clca_result = run_clca_demo(out / "clca", model, tokenizer, model_name, data, batch_size) if clca else None
    distribution = None
    if wvs is not None:
        distribution = run_distribution_demo(out / "distribution", wvs, model_name, list(cultures), batch_size)
    return {"answer_shift": shift, "report": report, "clca": clca_result, "distribution": distribution}


def run_distribution_demo(output_dir: Path, wvs: WVSData, model_name: str = DEFAULT_MODEL,
                          cultures: list[str] | tuple[str, ...] = DEMO_CULTURES, batch_size: int = 16,
                          max_steps: int = 60) -> dict:
    """Train the model on the demo cultures' human answer distributions of 70 % of the items (one seed, a short
    run, and the same run with shuffled culture labels) and print the held-out KL against the baselines.

    A demonstration, not a result: results need 3 seeds and 50+ steps (``culture-align experiment``).
    """
    from .experiments import ExperimentConfig, ExperimentRunner

    config = ExperimentConfig.from_dict({
        "name": "demo-distribution", "model": model_name, "cultures": list(cultures), "dtype": "bfloat16",
        "split": {"protocol": "held_out_items", "test_share": 0.3, "seed": 0},
        "baselines": ["uniform", "position_prior", "culture_prompt"], "allow_short_training": True,
        "batch_size": batch_size, "bootstrap_resamples": 500,
        "conditions": [{"name": "answer_distribution", "recipe": "answer_distribution", "seeds": [0],
                        "data": {"source": "wvs_answers", "setting": "culture-aware"}, "mode": "joint",
                        "lora": {"r": 16, "lora_alpha": 32},
                        "training": {"max_steps": max_steps, "per_device_train_batch_size": 8,
                                     "learning_rate": 1e-3, "warmup_ratio": 0.05}}]})
    print(f"\nTraining on whole answer distributions ({', '.join(cultures)}; 30 % of the items held out; "
          f"{max_steps} steps, one seed: a demonstration, not a result):\n")
    payload = ExperimentRunner(config, output_dir=output_dir, wvs=wvs.select(cultures=list(cultures)),
                               show_progress=False).run()
    rows = [("culture-aware prompt (before)", "culture_prompt"), ("answer_distribution (after)", "answer_distribution"),
            ("same training, culture labels shuffled", "answer_distribution_shuffled_labels"),
            ("uniform distribution (no model)", "uniform"), ("position prior (no model)", "position_prior")]
    lines = ["| held-out cells | KL(human ‖ model) ↓ | 95 % CI |", "|---|---|---|"]
    for label, name in rows:
        mean = payload["conditions"][name]["mean"]
        lo, hi = mean["kl_divergence_ci95"]
        lines.append(f"| {label} | {mean['kl_divergence']:.3f} | [{lo:.3f}, {hi:.3f}] |")
    table = "\n".join(lines)
    print(table)
    print(f"\nFull report: {Path(output_dir) / 'report.md'}")
    return {"table": table, "results": payload}


def run_clca_demo(output_dir: Path, model, tokenizer, model_name: str, data: WVSData, batch_size: int = 16,
                  cultures: tuple[str, ...] = CLCA_DEMO_CULTURES, num_scenarios: int = 2, max_turns: int = 4,
                  train_epochs: int = 3) -> dict:
    """The CLCA recipe in miniature on an already loaded model; resumable (the generation cache is kept).

    Writes ``clca-data/`` (corpus, stats, cache), ``adapter/`` (LoRA) and ``comparison.md`` + plot.
    """
    import dataclasses

    from peft import LoraConfig

    from .backends.transformers import TransformersBackend
    from .recipes.clca import (
        DEFAULT_INTENT_PARAMS,
        DEFAULT_JUDGE_PARAMS,
        DEFAULT_ROLEPLAY_PARAMS,
        DEFAULT_SCENARIO_PARAMS,
        CLCAPipeline,
        CLCAPipelineConfig,
    )
    from .trainers import CLCAConfig, CLCATrainer

    output_dir.mkdir(parents=True, exist_ok=True)
    print(f"\nCLCA in miniature: {num_scenarios} scenarios x {', '.join(cultures)}, up to {max_turns} turns, "
          f"the same {model_name} as teacher, both agents, judge and annotator")
    teacher = TransformersBackend.from_model(model, tokenizer, model_id=model_name, batch_size=batch_size)
    config = CLCAPipelineConfig(
        cultures=cultures, num_scenarios=num_scenarios, max_turns=max_turns,
        scenario_params=dataclasses.replace(DEFAULT_SCENARIO_PARAMS, max_new_tokens=512),
        roleplay_params=dataclasses.replace(DEFAULT_ROLEPLAY_PARAMS, max_new_tokens=96),
        judge_params=DEFAULT_JUDGE_PARAMS, intent_params=DEFAULT_INTENT_PARAMS)
    corpus = CLCAPipeline(teacher, config=config).run(output_dir / "clca-data")
    print(f"corpus: {len(corpus['dialogues'])} dialogues, {len(corpus['train'])} training conversations, "
          f"{len(corpus['rejections'])} rejections (details in {output_dir / 'clca-data' / 'stats.json'})")
    if len(corpus["train"]) == 0:
        print("No dialogue survived the judge: skipping training.")
        return {"corpus": corpus, "adapter": None}

    args = CLCAConfig(output_dir=str(output_dir / "adapter"), num_train_epochs=train_epochs,
                      per_device_train_batch_size=4, learning_rate=2e-4, logging_steps=1, save_strategy="no",
                      report_to="none", bf16=False, activation_checkpointing=False, max_length=1024,
                      disable_tqdm=False, seed=0)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = CLCATrainer(model, args=args, train_dataset=corpus["train"], processing_class=tokenizer,
                          peft_config=lora)
    trainer.train()
    trainer.save_model(args.output_dir)
    losses = [(h.get("loss_dialogue"), h.get("loss_intent")) for h in trainer.state.log_history if "loss" in h]
    print(f"CLCATrainer: {trainer.state.global_step} steps; first/last (dialogue, intent) loss: "
          f"{losses[0] if losses else '-'} -> {losses[-1] if losses else '-'}; adapter in {args.output_dir}")

    peft_model = trainer.model
    peft_model.eval()
    evaluate_on = data.select(qids=list(data.questions), cultures=[c for c in cultures if c in data.cultures]) \
        if data.cultures else data
    kwargs = dict(cultures=list(cultures), settings=("culture-aware",), batch_size=batch_size, show_progress=False)
    with peft_model.disable_adapter():
        base = WVSEvaluator(peft_model, tokenizer, evaluate_on, model_name=model_name, **kwargs)
        base_answers = base.model_answers()
        base_report = base.evaluate() if data.cultures else None
    adapted = WVSEvaluator(peft_model, tokenizer, evaluate_on, model_name=f"{model_name} + CLCA adapter", **kwargs)
    adapted_answers = adapted.model_answers()
    lines = comparison_table(base_answers, adapted_answers, base_report,
                             adapted.evaluate() if data.cultures else None, list(cultures))
    (output_dir / "comparison.md").write_text(lines)
    print("\nBase vs. CLCA adapter (culture-aware prompts):\n")
    print(lines)
    return {"corpus": corpus, "adapter": args.output_dir}


def comparison_table(base_answers, adapted_answers, base_report, adapted_report, cultures: list[str]) -> str:
    """Markdown: per culture, how the adapter moved the answers, and (with human data) KL before/after."""
    from scipy.spatial.distance import jensenshannon

    base = {(r["culture"], r["qid"]): r for r in base_answers}
    head = "| culture | items | answer changed | JS(base, adapted) |"
    sep = "|---|---|---|---|"
    if base_report is not None:
        head += " KL base | KL adapted | align base | align adapted |"
        sep += "---|---|---|---|"
    lines = [head, sep]
    for culture in cultures:
        pairs = [(base[(r["culture"], r["qid"])], r) for r in adapted_answers if r["culture"] == culture]
        if not pairs:
            continue
        changed = np.mean([a["model_code"] != b["model_code"] for b, a in pairs])
        js = np.mean([jensenshannon(b["model_probs"], a["model_probs"]) for b, a in pairs])
        line = f"| {culture} | {len(pairs)} | {changed:.0%} | {js:.3f} |"
        if base_report is not None:
            try:
                rb, ra = base_report.row("culture-aware", culture), adapted_report.row("culture-aware", culture)
                line += (f" {rb['kl_divergence']:.3f} | {ra['kl_divergence']:.3f} | {rb['alignment_score']:.1f} |"
                         f" {ra['alignment_score']:.1f} |")
            except KeyError:
                line += " – | – | – | – |"
        lines.append(line)
    return "\n".join(lines) + "\n"
