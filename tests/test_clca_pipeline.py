"""CLCA data pipeline, stage by stage and end to end, on a scripted fake backend (offline, fast).

The fake answers deterministically from the request (the stage comes from the JSON schema's title, the
behaviour from ``[[markers]]`` in the scenario setting, which the fake teacher keeps when adapting):

- ``[[adapt-bad-once]]`` / ``[[adapt-never]]``: malformed adaptation on the first attempt / on every one;
- ``[[long]]``: nobody leaves (max_turns); default: participant 1 leaves at turn 5;
- ``[[leave-early]]``: participant 2 leaves at turn 2;
- ``[[impersonate]]``: turn 2 is first written entirely as participant 1 (invalid, retried), then as a
  reply followed by a line written as participant 1 (cleaned);
- ``[[bad-turn]]``: turn 3 is always malformed; ``[[bad-first]]``: turn 1 is always malformed;
- ``[[drop-quality]]`` / ``[[drop-meta]]``: very confident "bad" quality / meta verdicts;
- ``[[unsure-bad]]``: quality "bad" but only "confident" (kept by the default rule);
- ``[[judge-bad-once]]``: the greedy quality verdict is malformed (only a sampled retry is valid);
- ``[[intent-never]]``: the intent of turn 2 is always malformed.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from culture_align.backends.base import GenerationBackend, GenerationParams
from culture_align.backends.cache import CachedBackend, CompletionCache
from culture_align.prompts.clca import PROMPT_VERSION
from culture_align.recipes.clca import (
    DIALOGUE_FEATURES,
    REJECTION_FEATURES,
    SCENARIO_FEATURES,
    TRAIN_FEATURES,
    CLCAPipeline,
    CLCAPipelineConfig,
    DropRule,
    TurnReply,
    adapt_scenarios,
    annotate_intents,
    build_training_set,
    dialogue_features,
    judge_dialogues,
    load_seed_scenarios,
    parse_reply,
    run_roleplay,
    strip_impersonation,
)
from culture_align.recipes.clca.schemas import InvalidReply, json_schema_for

BAD = "this is not JSON {"


class FakeBackend(GenerationBackend):
    """Deterministic scripted answers; records every call as (stage, size, seed, temperature, conversations)."""

    def __init__(self, model_id: str = "fake-teacher") -> None:
        self.model_id = model_id
        self.calls: list[dict] = []

    def _generate(self, conversations, params):
        stage = params.json_schema["title"]
        self.calls.append({"stage": stage, "size": len(conversations), "seed": params.seed,
                           "temperature": params.temperature, "conversations": conversations})
        return [json.dumps(out) if isinstance(out, dict) else out
                for out in (getattr(self, f"_{stage}")(c, params) for c in conversations)]

    def stage_calls(self, stage: str, seed: int | None = None) -> list[dict]:
        return [c for c in self.calls if c["stage"] == stage and (seed is None or c["seed"] == seed)]

    @staticmethod
    def _text(conversation) -> str:
        return "\n".join(m["content"] for m in conversation)

    def _AdaptedScenario(self, conversation, params):
        user = conversation[-1]["content"]
        seed = json.loads(re.search(r"Scenario:\n(\{.*\})\n\nAnswer with", user, re.S).group(1))
        country = re.search(r"takes place in (.+?) and fits", user).group(1)
        if "[[adapt-never]]" in user or ("[[adapt-bad-once]]" in user and params.seed == 0):
            return BAD
        for key in ("person1", "person2"):
            seed[key]["background"] += f" Lives in {country}."
        return seed

    def _TurnReply(self, conversation, params):
        system, user = conversation[0]["content"], conversation[1]["content"]
        me, other = re.search(r"Your role: you are (.+?), in a conversation with (.+?)\.\n", system).groups()
        turn = int(re.search(r"It is turn (\d+) of at most", user).group(1))
        if ("[[bad-turn]]" in system and turn == 3) or ("[[bad-first]]" in system and turn == 1):
            return BAD
        if "[[impersonate]]" in system and turn == 2:
            if params.seed == 0:
                return {"action": "speak", "output": f"{other}: I fully agree with myself."}
            return {"action": "speak", "output": f"Fine by me.\n{other}: Great, thank you!"}
        if "[[leave-early]]" in system and turn == 2:
            return {"action": "leave", "output": "Goodbye."}
        if "[[long]]" not in system and turn == 5:
            return {"action": "leave", "output": ""}
        if turn == 4:
            return {"action": "non-verbal", "output": "nods slowly"}
        return {"action": "speak", "output": f"{me} speaks at turn {turn}."}

    def _QualityVerdict(self, conversation, params):
        text = self._text(conversation)
        if "[[judge-bad-once]]" in text and params.temperature == 0:
            return BAD
        if "[[drop-quality]]" in text:
            return {"rationale": "Repetitive.", "verdict": "bad", "confidence": "very confident"}
        if "[[unsure-bad]]" in text:
            return {"rationale": "A bit flat.", "verdict": "bad", "confidence": "confident"}
        return {"rationale": "Coherent.", "verdict": "good", "confidence": "confident"}

    def _AlignmentVerdict(self, conversation, params):
        return "```json\n" + json.dumps({"rationale": "Polite.", "verdict": "aligned",
                                         "confidence": "not sure"}) + "\n```"

    def _MetaVerdict(self, conversation, params):
        text = self._text(conversation)
        assert "Quality: " in text and "Alignment with" in text  # sees the first two verdicts
        if "[[drop-meta]]" in text:
            return {"critique": "The quality verdict is wrong.", "verdict": "bad", "confidence": "very confident"}
        return {"critique": "Sound.", "verdict": "good", "confidence": "confident"}

    def _IntentAnnotation(self, conversation, params):
        user = conversation[-1]["content"]
        turn = int(re.search(r"intent in turn (\d+)\?", user).group(1))
        speaker = re.search(r"What is (.+?)'s intent", user).group(1)
        if "[[intent-never]]" in conversation[0]["content"] and turn == 2:
            return BAD
        return {"intent": f"{speaker} wants to keep harmony (turn {turn})."}


class ContinuousFakeBackend(FakeBackend):
    """The fake with its own ``generate_continuous``: one request at a time, newest first (a schedule
    nothing like the waves), to show the role-play does not depend on the order of completions."""

    continuous_batching = True

    def generate_continuous(self, requests, on_completion):
        stack = list(requests)
        while stack:
            request = stack.pop()
            text = self.generate([request.conversation], request.params)[0]
            stack.extend(on_completion(request, text) or ())


class RaisingBackend(GenerationBackend):
    """Same model id as the fake; any generation is an error (proves a resumed run reads the cache only)."""

    model_id = "fake-teacher"

    def _generate(self, conversations, params):
        raise AssertionError("the backend was called although everything is cached")


class CrashingBackend(FakeBackend):
    """The fake, crashing (like a killed process) after ``limit`` calls."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def _generate(self, conversations, params):
        if len(self.calls) >= self.limit:
            raise KeyboardInterrupt("simulated crash")
        return super()._generate(conversations, params)


def person(name: str, goal: str) -> dict:
    return {"name": name, "occupation": "clerk", "background": f"{name} is 40.", "goal": goal,
            "secrets": f"{name}'s secret."}


def seed(sid: str, markers: str = "") -> dict:
    return {"id": sid, "social_goal": "negotiation", "setting": f"A market. {markers}".strip(),
            "relationship": "strangers", "person1": person("Ann Lee", "Sell high."),
            "person2": person("Bob Stone", "Buy low.")}


SEEDS = [
    seed("plain"), seed("long", "[[long]]"), seed("leave", "[[leave-early]]"), seed("imp", "[[impersonate]]"),
    seed("badturn", "[[bad-turn]]"), seed("badfirst", "[[bad-first]]"), seed("dropq", "[[drop-quality]]"),
    seed("dropm", "[[drop-meta]]"), seed("unsure", "[[unsure-bad]] [[judge-bad-once]]"),
    seed("intent", "[[intent-never]]"), seed("adapt1", "[[adapt-bad-once]]"), seed("adaptx", "[[adapt-never]]"),
]


@pytest.fixture()
def seed_file(tmp_path) -> Path:
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    return path


def by_seed(dataset, key="seed_id") -> dict:
    return {row[key]: row for row in dataset}


# ------------------------------------------------------------------------------------------------------
# Seeds, parsing
# ------------------------------------------------------------------------------------------------------


def test_bundled_seed_scenarios():
    seeds = load_seed_scenarios()
    assert len(seeds) == 20
    assert len(set(seeds["id"])) == 20
    assert len(set(seeds["social_goal"])) >= 15
    for row in seeds:
        assert row["person1"]["name"] != row["person2"]["name"]
        assert all(row[p][k] for p in ("person1", "person2") for k in ("goal", "secrets", "background"))


def test_seed_file_errors_name_file_and_row(tmp_path, seed_file):
    assert len(load_seed_scenarios(seed_file)) == len(SEEDS)
    bad = tmp_path / "bad.jsonl"
    broken = dict(SEEDS[1], person2={k: v for k, v in SEEDS[1]["person2"].items() if k != "goal"})
    bad.write_text(json.dumps(SEEDS[0]) + "\n" + json.dumps(broken) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: invalid seed scenario: person2.goal: Field required"):
        load_seed_scenarios(bad)
    bad.write_text(json.dumps(SEEDS[0]) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: invalid JSON"):
        load_seed_scenarios(bad)
    bad.write_text(json.dumps(SEEDS[0]) + "\n" + json.dumps(SEEDS[0]) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: repeated scenario id 'plain'"):
        load_seed_scenarios(bad)
    bad.write_text(json.dumps(dict(SEEDS[0], mood="x")) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: .*mood: Extra inputs"):
        load_seed_scenarios(bad)


def test_yaml_seed_file(tmp_path):
    import yaml

    path = tmp_path / "seeds.yaml"
    path.write_text(yaml.safe_dump({"scenarios": SEEDS[:2]}))
    assert load_seed_scenarios(path)["id"] == ["plain", "long"]


def test_parse_reply_is_lenient_about_wrapping_and_strict_about_content():
    assert parse_reply('Sure! ```json\n{"action": "speak", "output": " Hi "}\n``` bye', TurnReply).output == "Hi"
    assert parse_reply('{"action": "none", "output": "ignored"}', TurnReply).output == ""
    for text, reason in [("no json", "no JSON object"), ('{"action": "shout", "output": "x"}', "action"),
                         ('{"action": "speak", "output": "  "}', "non-empty output"), ('{"action": "sp', "invalid JSON")]:
        with pytest.raises(InvalidReply, match=reason):
            parse_reply(text, TurnReply)


def test_json_schema_is_plain():
    from culture_align.recipes.clca import AdaptedScenario

    schema = json_schema_for(AdaptedScenario)
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text and "description" not in text
    assert schema["title"] == "AdaptedScenario" and schema["additionalProperties"] is False
    assert schema["properties"]["person1"]["additionalProperties"] is False
    assert schema["properties"]["person1"]["required"] == ["name", "occupation", "background", "goal", "secrets"]
    # maxLength is a decoding hint for grammar-constrained backends, not a validation rule
    assert json_schema_for(TurnReply)["properties"]["output"]["maxLength"] == 1000
    assert len(parse_reply(json.dumps({"action": "speak", "output": "x" * 3000}), TurnReply).output) == 3000


# ------------------------------------------------------------------------------------------------------
# Stages
# ------------------------------------------------------------------------------------------------------


def adapted(seed_file, backend=None, cultures=("GBR",)):
    backend = backend or FakeBackend()
    result = adapt_scenarios(load_seed_scenarios(seed_file), list(cultures), backend, show_progress=False)
    return result, backend


def test_adapt_scenarios_retries_and_rejects(seed_file):
    result, backend = adapted(seed_file, cultures=("GBR", "CHN"))
    assert result.dataset.features == SCENARIO_FEATURES and result.rejections.features == REJECTION_FEATURES
    assert len(result.dataset) == 2 * (len(SEEDS) - 1)
    # one batched call for all (culture, seed) pairs, then one per retry round
    assert [c["size"] for c in backend.calls] == [2 * len(SEEDS), 4, 2]
    assert [c["seed"] for c in backend.calls] == [0, 1, 2]
    rows = {(r["culture"], r["seed_id"]): r for r in result.dataset}
    assert "Lives in China." in rows[("CHN", "plain")]["person1"]["background"]
    assert rows[("GBR", "adapt1")]["provenance"]["attempts"] == 2
    assert rows[("GBR", "plain")]["provenance"]["prompt_version"] == PROMPT_VERSION
    rejected = result.rejections.to_list()
    assert {(r["culture"], r["stage"], r["reason"]) for r in rejected} == {
        ("GBR", "scenarios", "invalid_json"), ("CHN", "scenarios", "invalid_json")}
    detail = json.loads(rejected[0]["detail"])
    assert detail["seed_id"] == "adaptx" and detail["raw"] == [BAD] * 3 and len(detail["errors"]) == 3
    assert result.stats == {"requested": 24, "adapted": 22, "rejected": 2, "retried": 4, "attempts": 30,
                            "invalid_attempts": 8}
    # stable ids: same inputs, same ids; another culture, another id
    again, _ = adapted(seed_file, cultures=("GBR", "CHN"))
    assert again.dataset["id"] == result.dataset["id"]
    assert len(set(result.dataset["id"])) == len(result.dataset)


def test_roleplay_batches_in_waves(seed_file):
    """A backend without continuous batching gets waves: every request known at that moment, one batched
    call per params (first attempts and retries apart), never one call per dialogue."""
    scenarios, _ = adapted(seed_file, cultures=("GBR", "CHN"))
    agent = FakeBackend()
    result = run_roleplay(scenarios.dataset, agent, max_turns=6, show_progress=False)
    assert result.stats["scheduling"] == "waves" and result.stats["backend_calls"] == len(agent.calls)
    # wave 1: turn 1 of all 22 dialogues in one call
    assert agent.calls[0]["size"] == len(scenarios.dataset) == 22 and agent.calls[0]["seed"] == 0
    # every attempt went through a batched call, and no call repeats a (wave, params) group
    assert sum(c["size"] for c in agent.calls) == result.stats["attempts"]
    turns = [int(re.search(r"It is turn (\d+) of", conv[1]["content"]).group(1))
             for c in agent.calls for conv in c["conversations"]]
    assert len(turns) == result.stats["attempts"]
    # the waves: [turn 1] -> [turn 2, retries of turn 1] -> ...: 6 turns + the lag of the retried dialogues
    first_attempts = agent.stage_calls("TurnReply", seed=0)
    assert [c["size"] for c in first_attempts][0] == 22 and len(first_attempts) <= 6 + 2
    # retries: bad-first (turn 1, twice), impersonate (turn 2, once), bad-turn (turn 3, twice), per culture
    assert sorted((c["size"], c["seed"]) for c in agent.calls if c["seed"] > 0) == sorted(
        [(2, 1), (2, 2), (2, 1), (2, 1), (2, 2)])
    # the same dialogues as a continuous run over a backend that batches continuously
    continuous = run_roleplay(scenarios.dataset, ContinuousFakeBackend(), max_turns=6, show_progress=False)
    assert continuous.stats["scheduling"] == "continuous"
    assert continuous.dataset.to_list() == result.dataset.to_list()
    assert continuous.rejections.to_list() == result.rejections.to_list()
    assert {k: v for k, v in continuous.stats.items() if k not in ("scheduling", "backend_calls")} == {
        k: v for k, v in result.stats.items() if k not in ("scheduling", "backend_calls")}


def test_roleplay_outcomes_and_prompts(seed_file):
    scenarios, _ = adapted(seed_file)
    agent1, agent2 = FakeBackend("agent-a"), FakeBackend("agent-b")
    result = run_roleplay(scenarios.dataset, agent1, agent2, max_turns=6, show_progress=False)
    assert result.dataset.features == dialogue_features(judged=False, annotated=False)
    assert "judge" not in result.dataset.column_names  # no placeholder for the judge stage to fill
    d = by_seed(result.dataset)
    assert d["plain"]["end_reason"] == "leave" and d["plain"]["num_turns"] == 5
    assert [t["participant"] for t in d["plain"]["turns"]] == [1, 2, 1, 2, 1]
    assert [t["action"] for t in d["plain"]["turns"]] == ["speak", "speak", "speak", "non-verbal", "leave"]
    assert d["plain"]["turns"][1] == {"participant": 2, "speaker": "Bob Stone", "action": "speak",
                                      "text": "Bob Stone speaks at turn 2."}
    assert d["long"]["end_reason"] == "max_turns" and d["long"]["num_turns"] == 6
    assert d["leave"]["end_reason"] == "leave" and d["leave"]["num_turns"] == 2
    imp = d["imp"]
    assert imp["turns"][1]["text"] == "Fine by me."
    assert imp["counts"] == {"malformed": 0, "impersonation": 2, "retries": 1}
    bad = d["badturn"]
    assert bad["end_reason"] == "malformed" and bad["num_turns"] == 2
    assert bad["counts"] == {"malformed": 3, "impersonation": 0, "retries": 2}
    assert json.loads(bad["end_detail"])["turn"] == 3
    assert "badfirst" not in d
    (rejection,) = result.rejections.to_list()
    assert rejection["stage"] == "roleplay" and rejection["reason"] == "too_short"
    assert json.loads(rejection["detail"])["end_reason"] == "malformed"
    # participant 1 is agent1, participant 2 is agent2
    def role(call):
        return re.search(r"Your role: you are (.+?),", call["conversations"][0][0]["content"]).group(1)

    assert {role(c) for c in agent1.calls} == {"Ann Lee"} and {role(c) for c in agent2.calls} == {"Bob Stone"}
    # own goal and secret in the system prompt, never the other's; history and turn number in the user turn
    system, user = agent2.calls[0]["conversations"][0][0]["content"], agent2.calls[0]["conversations"][0][1]["content"]
    assert "Buy low." in system and "Bob Stone's secret." in system
    assert "Sell high." not in system and "Ann Lee's secret." not in system
    assert "Ann Lee is 40." in system and "high power distance" not in system  # GBR profile
    assert "low power distance" in system
    assert 'Turn 1, Ann Lee said: "Ann Lee speaks at turn 1."' in user and "It is turn 2 of at most 6" in user
    assert d["plain"]["provenance"]["roleplay"]["agents"] == ["agent-a", "agent-b"]
    assert d["plain"]["provenance"]["scenario"]["stage"] == "scenarios"
    assert result.stats["end_reasons"] == {"leave": 8, "malformed": 2, "max_turns": 1}


@pytest.mark.parametrize("text, kept, flagged", [
    ("Hello there.", "Hello there.", False),
    ("Ann Lee: Hello there.", "Hello there.", False),
    ("Hello.\nBob Stone: Hi Ann!", "Hello.", True),
    ("Hello. **Bob**: Hi Ann!", "Hello.", True),
    ("Bob (smiling): Hi!", "", True),
    ("I told Bob: no.", "I told Bob: no.", False),
    ("Sure.\nDr. Stone: fine", "Sure.\nDr. Stone: fine", False),  # no title in the name: 'Dr. Stone' is someone else
])
def test_strip_impersonation(text, kept, flagged):
    assert strip_impersonation(text, "Ann Lee", "Bob Stone") == (kept, flagged)
    assert strip_impersonation("Thanks.\nDr. Cooper: Rest.", "Kevin", "Dr. Helen Cooper") == ("Thanks.", True)


def _roleplay_turns(scenario, turns: int) -> list[dict]:
    return [{"participant": 2 - t % 2, "speaker": scenario[f"person{2 - t % 2}"]["name"], "action": "speak",
             "text": f"Words of turn {t}, quite a few of them.", "intent": None} for t in range(1, turns + 1)]


def test_roleplay_prompts_reuse_the_prefix_cache(tiny_model_and_tokenizer):
    """Role-play prompts go from the most shared text to the least shared, and the history only grows:
    agent 2's first prompt reuses the rules, the culture and the scenario from agent 1's, and each agent's
    prompt at turn t + 2 reuses its prompt at turn t up to the end of the history shown then."""
    from culture_align.backends.transformers import TransformersBackend
    from culture_align.culture_profiles import get_culture_profile
    from culture_align.prompts.clca import build_roleplay_conversation

    model, tok = tiny_model_and_tokenizer
    backend = TransformersBackend.from_model(model, tok, model_id="tiny", batch_size=8)
    profile = get_culture_profile("GBR")
    scenarios = [seed("a"), seed("b", "A second market, another day.")]
    one_token = GenerationParams(temperature=0, max_new_tokens=1)
    rates = []
    for turn in (1, 2, 3, 4):
        participant = 2 - turn % 2
        convs = [build_roleplay_conversation(s, participant, profile, _roleplay_turns(s, turn - 1), 6)
                 for s in scenarios]
        before = backend.stats.to_dict()
        backend.generate(convs, one_token)
        rates.append((backend.stats.cached_prompt_tokens - before["cached_prompt_tokens"])
                     / (backend.stats.prompt_tokens - before["prompt_tokens"]))
    assert rates[0] > 0.5  # both dialogues: the rules and the culture prefilled once
    assert rates[1] > 0.6  # agent 2: rules, culture and scenario from agent 1's prompts
    assert rates[2] > 0.85 and rates[3] > 0.85  # the earlier prompt of the same agent


@pytest.mark.slow
def test_roleplay_with_prefix_cache_on_embedded_model(seed_file):
    """Greedy role-play on SmolLM2: the same dialogues with the prefix KV cache as without, most prompt
    tokens reused."""
    from culture_align.backends.transformers import TransformersBackend

    cached = TransformersBackend("smollm2-135m-instruct", model_id="smol", batch_size=4)
    plain = TransformersBackend.from_model(cached.model, cached.tokenizer, model_id="smol", batch_size=4,
                                           prefix_cache_tokens=0)
    scenarios = adapted(seed_file)[0].dataset.select(range(3))
    params = GenerationParams(temperature=0, max_new_tokens=40)
    with_cache = run_roleplay(scenarios, cached, params=params, max_turns=4, show_progress=False)
    without = run_roleplay(scenarios, plain, params=params, max_turns=4, show_progress=False)
    assert [d["turns"] for d in with_cache.dataset] == [d["turns"] for d in without.dataset]
    assert len(with_cache.dataset) + len(with_cache.rejections) == 3
    assert cached.stats.prefix_cache_hit_rate > 0.6 and plain.stats.cached_prompt_tokens == 0
    assert cached.stats.prefilled_tokens < 0.5 * plain.stats.prefilled_tokens


def judged(seed_file, **kwargs):
    scenarios, _ = adapted(seed_file)
    dialogues = run_roleplay(scenarios.dataset, FakeBackend(), max_turns=6, show_progress=False)
    judge = FakeBackend("judge")
    return judge_dialogues(dialogues.dataset, judge, show_progress=False, **kwargs), judge, dialogues


def test_judge_verdicts_and_default_drop_rule(seed_file):
    result, judge, dialogues = judged(seed_file)
    kept = by_seed(result.dataset)
    assert set(kept) == set(by_seed(dialogues.dataset)) - {"dropq", "dropm"}
    assert kept["plain"]["judge"] == {
        "quality": {"verdict": "good", "confidence": "confident", "rationale": "Coherent."},
        "alignment": {"verdict": "aligned", "confidence": "not sure", "rationale": "Polite."},
        "meta": {"verdict": "good", "confidence": "confident", "critique": "Sound."}}
    assert kept["unsure"]["judge"]["quality"]["verdict"] == "bad"  # only "confident": kept
    reasons = {json.loads(r["detail"])["judge"]["quality"]["rationale"]: r["reason"] for r in result.rejections}
    assert reasons == {"Repetitive.": "quality_bad", "Coherent.": "meta_bad"}
    assert set(result.rejections["stage"]) == {"judge"}
    # batched: quality, alignment, meta = 3 calls + 1 retry of the greedy quality verdict, sampled
    assert [(c["stage"], c["size"]) for c in judge.calls] == [
        ("QualityVerdict", 10), ("QualityVerdict", 1), ("AlignmentVerdict", 10), ("MetaVerdict", 10)]
    assert [c["temperature"] for c in judge.calls] == [0.0, 0.7, 0.0, 0.0]
    assert kept["plain"]["provenance"]["judge"]["model"] == "judge"


def test_configurable_drop_rule(seed_file):
    keep_all, _, _ = judged(seed_file, drop_rule=DropRule(quality_bad=(), meta_bad=()))
    assert len(keep_all.dataset) == 10 and len(keep_all.rejections) == 0
    strict, _, _ = judged(seed_file, drop_rule=DropRule(quality_bad=("very confident", "confident")))
    assert "unsure" not in by_seed(strict.dataset)
    everything, _, _ = judged(seed_file, drop_rule=lambda d: d["judge"]["alignment"]["verdict"] == "aligned")
    assert len(everything.dataset) == 0 and set(everything.rejections["reason"]) == {"dropped_by_rule"}


def test_intents_batched_over_all_turns(seed_file):
    result, _, _ = judged(seed_file)
    annotator = FakeBackend("annotator")
    annotated = annotate_intents(result.dataset, annotator, show_progress=False)
    total_turns = sum(result.dataset["num_turns"])
    assert [c["size"] for c in annotator.calls] == [total_turns, 1, 1]
    rows = by_seed(annotated.dataset)
    assert rows["plain"]["turns"][1]["intent"] == "Bob Stone wants to keep harmony (turn 2)."
    assert rows["intent"]["turns"][1]["intent"] is None and rows["intent"]["turns"][0]["intent"]
    (rejection,) = annotated.rejections.to_list()
    assert (rejection["stage"], rejection["reason"]) == ("intents", "intent_invalid")
    assert json.loads(rejection["detail"])["failed_turns"][0]["turn"] == 2
    # the annotator sees backgrounds and occupations, never goals or secrets; only turns up to the one asked
    conv = annotator.calls[0]["conversations"][1]
    text = conv[0]["content"] + conv[1]["content"]
    assert "Ann Lee is 40." in text and "clerk" in text and "British" in conv[0]["content"]
    assert "Sell high." not in text and "Buy low." not in text and "secret" not in text
    assert "turn 2" in conv[1]["content"] and "Turn 3," not in conv[1]["content"]


def test_training_set_both_perspectives_and_intents(seed_file):
    result, _, _ = judged(seed_file)
    annotated = annotate_intents(result.dataset, FakeBackend("annotator"), show_progress=False).dataset
    train = build_training_set(annotated)
    assert train.features == TRAIN_FEATURES
    plain = by_seed(annotated)["plain"]
    rows = [r for r in train if r["dialogue_id"] == plain["id"]]
    assert [r["task"] for r in rows] == ["dialogue", "dialogue", "intent"]
    p1, p2, intent = (r["messages"] for r in rows)
    # participant 1: own persona as system, an opening user turn, own turns as assistant turns
    assert p1[0]["role"] == "system" and p1[0]["content"].startswith("You are Ann Lee,")
    assert "Sell high." in p1[0]["content"] and "Buy low." not in p1[0]["content"]
    assert [m["role"] for m in p1[1:]] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert p1[2]["content"] == "Ann Lee speaks at turn 1." and p1[5]["content"] == "*nods slowly*"
    assert p1[6]["content"] == "*(leaves)*"
    # participant 2: own persona; the trailing turn of participant 1 is dropped
    assert p2[0]["content"].startswith("You are Bob Stone,") and "Buy low." in p2[0]["content"]
    assert [m["role"] for m in p2[1:]] == ["user", "assistant", "user", "assistant"]
    assert p2[1]["content"] == "Ann Lee speaks at turn 1." and p2[2]["content"] == "Bob Stone speaks at turn 2."
    # intents: one assistant "Intent: ..." per turn
    assert [m["content"] for m in intent if m["role"] == "assistant"] == [
        f"Intent: {t['intent']}" for t in plain["turns"]]
    assert "Sell high." not in intent[0]["content"]
    # the dialogue whose intent failed gets no intent conversation
    failed = by_seed(annotated)["intent"]["id"]
    assert [r["task"] for r in train if r["dialogue_id"] == failed] == ["dialogue", "dialogue"]
    assert len(set(train["id"])) == len(train)
    assert build_training_set(annotated)["id"] == train["id"]
    provenance = rows[0]["provenance"]
    assert provenance["models"] == {"teacher": "fake-teacher", "agents": ["fake-teacher", "fake-teacher"],
                                    "judge": "judge", "annotator": "annotator"}
    assert provenance["seed"] == 0 and provenance["prompt_version"] == PROMPT_VERSION
    assert len(build_training_set(annotated, include_intents=False)) == 2 * len(annotated)


# ------------------------------------------------------------------------------------------------------
# Pipeline
# ------------------------------------------------------------------------------------------------------


def pipeline_config(seed_file, **kwargs) -> CLCAPipelineConfig:
    return CLCAPipelineConfig(cultures=("GBR", "CHN"), scenario_file=str(seed_file), max_turns=6,
                              show_progress=False, **kwargs)


def as_lists(corpus) -> dict:
    return {name: split.to_list() for name, split in corpus.items()}


def test_provenance_is_typed_and_hashes_as_its_json_text(tmp_path, seed_file):
    """Provenance is a typed struct, each stage adding its key; ids and experiment fingerprints hash its canonical
    JSON text, the text corpora held before it became a struct: this fake run's training ids are those the
    JSON-text code made (digest recorded from it), and a corpus in the old form gives the same ids, structs and
    fingerprint."""
    import hashlib
    from types import SimpleNamespace

    import datasets

    from culture_align.experiments.training import training_fingerprint
    from culture_align.recipes.provenance import PARAMS_FEATURES, as_provenance, upgrade_provenance_column

    assert set(PARAMS_FEATURES) == {f for f in GenerationParams.__dataclass_fields__ if f != "json_schema"}
    corpus = CLCAPipeline(FakeBackend(), config=pipeline_config(seed_file)).run(tmp_path / "out")
    train, dialogues = corpus["train"], corpus["dialogues"]
    assert hashlib.sha256("\n".join(train["id"]).encode()).hexdigest()[:16] == "cb2a3553d65eb3ab"
    stages = dialogues[0]["provenance"]
    assert set(stages) == {"scenario", "roleplay", "judge", "intents"}
    assert stages["roleplay"]["params"]["temperature"] == 0.7 and stages["scenario"]["attempts"] == 1

    def as_text(table):
        features = datasets.Features({**table.features, "provenance": datasets.Value("string")})
        return table.map(lambda r: {"provenance": json.dumps(r["provenance"], sort_keys=True)}, features=features)

    old_dialogues, old_train = as_text(dialogues), as_text(train)
    assert build_training_set(old_dialogues)["id"] == train["id"]
    assert upgrade_provenance_column(old_dialogues, DIALOGUE_FEATURES).to_list() == dialogues.to_list()
    condition = SimpleNamespace(recipe="clca", mode="joint", training={}, lora={})
    assert training_fingerprint(condition, old_train, "m", None, 0) == training_fingerprint(condition, train, "m",
                                                                                            None, 0)
    changed = train.map(lambda r: {"provenance": {**r["provenance"], "seed": 1}})
    assert training_fingerprint(condition, changed, "m", None, 0) != training_fingerprint(condition, train, "m",
                                                                                          None, 0)
    with pytest.raises(ValueError, match="scenario s1: provenance is not JSON"):
        as_provenance("{oops", "scenario s1")


def test_pipeline_without_intents_saves_the_corpus_table(tmp_path, seed_file):
    corpus = CLCAPipeline(FakeBackend(), config=pipeline_config(seed_file, include_intents=False)).run(tmp_path / "o")
    assert corpus["dialogues"].features == DIALOGUE_FEATURES
    row = corpus["dialogues"][0]
    assert row["provenance"]["intents"] is None and row["provenance"]["judge"]["model"] == "fake-teacher"
    assert {t["intent"] for t in row["turns"]} == {None}


def test_pipeline_end_to_end(tmp_path, seed_file):
    teacher = FakeBackend()
    corpus = CLCAPipeline(teacher, config=pipeline_config(seed_file)).run(tmp_path / "out")
    assert set(corpus) == {"dialogues", "train", "rejections"}
    assert corpus["dialogues"].features == DIALOGUE_FEATURES and corpus["train"].features == TRAIN_FEATURES
    # per culture: 12 seeds, 1 never adapted, 1 too short, 2 dropped by the judge -> 8 dialogues
    assert len(corpus["dialogues"]) == 16
    assert len(corpus["train"]) == 16 * 2 + 14  # 2 dialogues (one per culture) lack an intent
    reasons = {(r["stage"], r["reason"]) for r in corpus["rejections"]}
    assert reasons == {("scenarios", "invalid_json"), ("roleplay", "too_short"), ("judge", "quality_bad"),
                       ("judge", "meta_bad"), ("intents", "intent_invalid")}
    for split in corpus.values():
        assert len(set(split["id"])) == len(split) or split is corpus["rejections"]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["counts"]["dialogues"] == 16 and stats["counts"]["train_by_task"] == {"dialogue": 32, "intent": 14}
    assert stats["drop_reasons"] == {"intents:intent_invalid": 2, "judge:meta_bad": 2, "judge:quality_bad": 2,
                                     "roleplay:too_short": 2, "scenarios:invalid_json": 2}
    stages = stats["stages"]
    assert stages["scenarios"]["adapted"] == 22 and stages["roleplay"]["dialogues"] == 22
    assert stages["roleplay"]["kept"] == 20 == stages["judge"]["judged"]
    assert stages["judge"]["kept"] == 16 and stages["intents"]["turns"] == sum(corpus["dialogues"]["num_turns"])
    assert sum(stats["turns_per_dialogue"].values()) == 22
    assert stats["impersonations"] == 4 and stats["malformed_attempts"] == 12
    assert all(s["seconds"] >= 0 for s in stages.values())
    assert stages["roleplay"]["backend_requests"] > 0 and stages["roleplay"]["cache_hits"] == 0
    from datasets import load_from_disk

    assert as_lists(load_from_disk(str(tmp_path / "out" / "dataset"))) == as_lists(corpus)


def test_pipeline_rerun_makes_no_backend_call(tmp_path, seed_file):
    first = CLCAPipeline(FakeBackend(), config=pipeline_config(seed_file)).run(tmp_path / "out")
    lines = (tmp_path / "out" / "cache.jsonl").read_text().splitlines()
    pipe = CLCAPipeline(RaisingBackend(), config=pipeline_config(seed_file))
    again = pipe.run(tmp_path / "out")
    assert as_lists(again) == as_lists(first)
    assert all(s.get("backend_requests", 0) == 0 for s in pipe.stats["stages"].values())
    assert (tmp_path / "out" / "cache.jsonl").read_text().splitlines() == lines


@pytest.mark.parametrize("crash_after", [1, 8, 15, 30, 36, 44])  # scenarios, role-play, judge, intents
def test_pipeline_resumes_after_a_crash(tmp_path, seed_file, crash_after):
    config = pipeline_config(seed_file, cache_chunk_size=7)
    reference = CLCAPipeline(FakeBackend(), config=config).run(tmp_path / "reference")
    crashing = CrashingBackend(crash_after)
    with pytest.raises(KeyboardInterrupt):
        CLCAPipeline(crashing, config=config).run(tmp_path / "out")
    resumed_backend = FakeBackend()
    resumed = CLCAPipeline(resumed_backend, config=config).run(tmp_path / "out")
    assert as_lists(resumed) == as_lists(reference)
    keys = [json.loads(line)["key"] for line in (tmp_path / "out" / "cache.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys))  # nothing stored twice
    reference_keys = {json.loads(line)["key"] for line in
                      (tmp_path / "reference" / "cache.jsonl").read_text().splitlines()}
    assert set(keys) == reference_keys
    # what the crashed run generated was not generated again
    asked_again = sum(c["size"] for c in resumed_backend.calls)
    assert asked_again == len(reference_keys) - sum(c["size"] for c in crashing.calls)


def test_pipeline_roles_and_validation(tmp_path, seed_file):
    teacher, agent_a, agent_b, judge, annotator = (FakeBackend(n) for n in ("t", "a", "b", "j", "n"))
    pipe = CLCAPipeline(teacher, cultures="GBR", roleplay=(agent_a, agent_b), judge=judge, annotator=annotator,
                        config=pipeline_config(seed_file, num_scenarios=2, include_intents=False))
    corpus = pipe.run(tmp_path / "out")
    assert {c["stage"] for c in teacher.calls} == {"AdaptedScenario"}
    assert {c["stage"] for c in agent_a.calls} == {c["stage"] for c in agent_b.calls} == {"TurnReply"}
    assert {c["stage"] for c in judge.calls} == {"QualityVerdict", "AlignmentVerdict", "MetaVerdict"}
    assert annotator.calls == [] and set(corpus["train"]["task"]) == {"dialogue"}
    assert len(corpus["dialogues"]) == 2 and set(corpus["dialogues"]["culture"]) == {"GBR"}
    assert len(corpus["rejections"]) == 0  # an empty split is saved so that it loads back
    from datasets import load_from_disk

    assert as_lists(load_from_disk(str(tmp_path / "out" / "dataset"))) == as_lists(corpus)
    with pytest.raises(LookupError, match=r"No culture profile for Bolivia \(BOL\)"):
        CLCAPipeline(teacher, cultures=["BOL"])
    with pytest.raises(ValueError, match="Unknown culture"):
        CLCAPipeline(teacher, cultures=["Atlantis"])


def test_shared_cache_between_backends_with_the_same_model(tmp_path):
    cache = CompletionCache(tmp_path / "cache.jsonl")
    a, b = CachedBackend(FakeBackend(), cache), CachedBackend(RaisingBackend(), cache)
    conv = [[{"role": "system", "content": "Your role: you are Ann Lee, in a conversation with Bob.\n"},
             {"role": "user", "content": "It is turn 1 of at most 2."}]]
    params = GenerationParams(json_schema=json_schema_for(TurnReply))
    assert a.generate(conv, params) == b.generate(conv, params)


# ------------------------------------------------------------------------------------------------------
# Real decoding on the tiny model
# ------------------------------------------------------------------------------------------------------


def test_pipeline_smoke_on_tiny_llama(tmp_path, tiny_model_dir):
    """The real backend (chat template, JSON-schema-constrained decoding, per-request seeds) under the
    pipeline. The tiny model has random weights and rarely closes a JSON string within a few tokens, so most
    answers are rejected: only completion and accounting are checked, not quality."""
    transformers_backend = pytest.importorskip("culture_align.backends.transformers")
    backend = transformers_backend.TransformersBackend(str(tiny_model_dir), device="cpu", batch_size=8)
    short = GenerationParams(temperature=0.7, top_p=0.7, max_new_tokens=12)
    config = CLCAPipelineConfig(
        cultures=("GBR",), num_scenarios=2, max_turns=2, max_attempts=2, show_progress=False,
        roleplay_params=short, judge_params=replace(short, temperature=0.0), intent_params=short)
    # the fake teacher writes valid scenarios, so that the tiny model plays, judges and annotates
    pipe = CLCAPipeline(FakeBackend(), roleplay=backend, judge=backend, annotator=backend, config=config)
    corpus = pipe.run(tmp_path / "out")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    stages = stats["stages"]
    assert stages["scenarios"]["adapted"] == 2
    assert stages["roleplay"]["dialogues"] == 2 and stages["roleplay"]["backend_requests"] >= 2
    assert stages["roleplay"]["kept"] + stages["roleplay"]["rejected_too_short"] == 2
    assert stages["roleplay"]["backend_stats"]["agent1"]["generated_tokens"] > 0
    assert stats["tokens_generated"] == backend.stats.generated_tokens
    assert sum(stats["end_reasons"].values()) == 2
    assert len(corpus["dialogues"]) == stats["counts"]["dialogues"] == stages["judge"]["kept"]
    assert len(corpus["rejections"]) == sum(stats["drop_reasons"].values())
    assert len(corpus["train"]) == sum(stats["counts"]["train_by_task"].values())
    for reason in corpus["rejections"]["reason"]:
        assert reason in {"too_short", "judge_invalid", "quality_bad", "meta_bad", "intent_invalid"}
    # resumed from the cache alone: same corpus, no generation
    before = backend.stats.generated_tokens
    again = CLCAPipeline(FakeBackend(), roleplay=backend, judge=backend, annotator=backend, config=config)
    assert as_lists(again.run(tmp_path / "out")) == as_lists(corpus)
    assert backend.stats.generated_tokens == before
