"""CLCA corpus: culture-adapted role-play dialogues with judge verdicts and intents, the training conversations
made from them, and everything the pipeline dropped.

Built from a run folder of :class:`culture_align.recipes.clca.CLCAPipeline` (``<run>/dataset`` and
``<run>/stats.json``)::

    from culture_align.builders import build_corpus

    build_corpus("clca_dialogues", "runs/clca-data", "hub/clca-dialogues")
"""

from __future__ import annotations

from culture_align.builders import (
    CHAT_MESSAGE_FIELDS,
    PARAMS_PROVENANCE_FIELDS,
    CorpusCard,
    RunFolderBuilder,
    RunTable,
)
from culture_align.recipes.clca.schemas import DIALOGUE_FEATURES, REJECTION_FEATURES, TRAIN_FEATURES

_PERSON = {
    "person?": "A participant of the scenario.",
    "person?.name": "The participant's name (fits the culture).",
    "person?.occupation": "The participant's occupation.",
    "person?.background": "Short background of the participant.",
    "person?.goal": "The participant's private social goal (the other participant does not see it).",
    "person?.secrets": "Something the participant keeps to themselves.",
}

_REJECTIONS = {
    "id": "Id of the dropped record (scenario, dialogue or turn) at its stage.",
    "stage": "Stage that dropped it: `scenarios`, `roleplay`, `judge` or `intents`.",
    "reason": "Short reason (e.g. `malformed`, `quality bad (very confident)`, `too_short`).",
    "culture": "ISO3 code of the record's culture.",
    "detail": "JSON text: the errors, the raw model answers of every attempt, the verdicts.",
}


class CLCADialogues(RunFolderBuilder):
    """The CLCA corpus of a pipeline run: ``dialogues``, ``train`` (training conversations) and ``rejections``."""

    RECIPE = "clca"
    TABLES = {
        "train": RunTable(TRAIN_FEATURES, (
            "Training conversations for `CLCATrainer`: `dialogue` examples (the model plays one participant of a "
            "kept dialogue, in chat format) and `intent` examples (the model states what a speaker meant by a "
            "turn).")),
        "dialogues": RunTable(DIALOGUE_FEATURES, (
            "The kept role-play dialogues: the culture-adapted scenario, the turns with their annotated intents, "
            "the judge's verdicts and the provenance.")),
        "rejections": RunTable(REJECTION_FEATURES, (
            "Every record a pipeline stage dropped, with the stage, the reason and the raw answers, so that "
            "nothing generated is lost and the filters can be audited.")),
    }
    CARD = CorpusCard(
        pretty_name="CLCA culture-adapted role-play dialogues",
        summary=(
            "Synthetic social role-play dialogues adapted to target cultures, made with the CLCA recipe "
            "(Cultural Learning-Based Culture Adaptation, Liu, Korhonen & Gurevych, ACL 2025) as implemented in "
            "culture-align: Sotopia-style seed scenarios are adapted to each culture by a teacher model, two "
            "LLM agents role-play them (each knowing only its own goal, both told the culture's Inglehart-Welzel "
            "and Hofstede profile), an LLM judge keeps the good, culturally aligned dialogues, and an annotator "
            "labels the intent of every turn. The `train` config holds the resulting chat-format training "
            "examples for dialogue imitation and intent understanding."),
        license="other",
        license_name="generated-data-terms-of-the-teacher-models",
        task_categories=("text-generation",),
        tags=("synthetic", "dialogue", "role-play", "culture", "clca"),
        fields={
            "train": {
                **CHAT_MESSAGE_FIELDS,
                "task": "`dialogue` (play a participant) or `intent` (state a speaker's intent).",
                "culture": "ISO3 code of the target culture.",
                "id": "Stable id of the example (hash of its inputs).",
                "dialogue_id": "Id of the dialogue it was made from (`dialogues` config).",
                "provenance": "How the example was made.",
                "provenance.models": "The model of every stage.",
                "provenance.models.teacher": "The teacher that adapted the scenario.",
                "provenance.models.agents": "The two role-play agents.",
                "provenance.models.judge": "The judge.",
                "provenance.models.annotator": "The intent annotator (None without intents).",
                "provenance.seed": "The role-play sampling seed.",
                "provenance.prompt_version": "Version of the prompts' wording.",
                "provenance.participant": "The participant the example plays (None for an intent example).",
            },
            "dialogues": {
                "id": "Stable id of the dialogue (hash of its inputs).",
                "scenario_id": "Id of the culture-adapted scenario.",
                "seed_id": "Id of the seed scenario it was adapted from.",
                "culture": "ISO3 code of the target culture.",
                "social_goal": "Kind of situation (e.g. `negotiation`, `persuasion`).",
                "setting": "Where and when the scene takes place, adapted to the culture.",
                "relationship": "How the participants are related.",
                **_PERSON,
                "turns": "The dialogue, in order.",
                "turns.participant": "1 or 2.",
                "turns.speaker": "The speaker's name.",
                "turns.action": "`speak`, `non-verbal`, `none` or `leave`.",
                "turns.text": "What was said or done (empty for `none`).",
                "turns.intent": "The annotated intent of the turn (null without annotation).",
                "num_turns": "Number of turns.",
                "end_reason": "Why the dialogue ended: `leave`, `max_turns`, `malformed` or `impersonation`.",
                "end_detail": "The error of the turn that ended it, if any.",
                "counts": "Per-dialogue counts of generation problems.",
                "counts.malformed": "Turn answers that were not valid JSON of the turn schema.",
                "counts.impersonation": "Turns where an agent also spoke for the other participant.",
                "counts.retries": "Turn attempts retried.",
                "judge": "The judge's verdicts.",
                "judge.quality": "Is the dialogue natural, coherent, not repetitive.",
                "judge.alignment": "Does it fit the target culture.",
                "judge.meta": "A critique of the two verdicts.",
                "judge.*.verdict": "`good`/`bad` (quality, meta) or `aligned`/`not aligned` (alignment).",
                "judge.*.confidence": "`very confident`, `confident` or `not sure`.",
                "judge.*.rationale": "The judge's reason.",
                "judge.meta.critique": "The meta judge's critique.",
                "provenance": "How the dialogue was made: one struct per stage.",
                "provenance.scenario": "The scenario's adaptation (None for a scenario given without provenance).",
                "provenance.scenario.stage": "`scenarios`.",
                "provenance.scenario.teacher": "The teacher model.",
                "provenance.scenario.attempts": "Answers the teacher gave until one was valid.",
                "provenance.roleplay": "The role-play.",
                "provenance.roleplay.agents": "The two agents' models.",
                "provenance.roleplay.max_turns": "The turn limit.",
                "provenance.judge": "The judging.",
                "provenance.judge.drop_rule": "The rule that dropped dialogues on their verdicts.",
                "provenance.intents": "The intent annotation (None when the run made no intents).",
                "provenance.*.model": "The stage's model.",
                **PARAMS_PROVENANCE_FIELDS,
            },
            "rejections": _REJECTIONS,
        },
        limitations=(
            "- Everything is generated by language models: the scenarios, the cultural behaviour and the judgements "
            "reflect what the teacher and judge models believe about a culture, including their stereotypes.\n"
            "- The dialogues are in English, whatever the culture.\n"
            "- The judge is an LLM; its verdicts are noisy and it tends to favour fluent dialogues.\n"
            "- A culture is represented by a country-level profile; variation inside a country is not modelled.\n"
            "- The terms of the teacher, agent and judge models (see below) may restrict use of their outputs."),
    )

