"""Prompts for the CLCA data pipeline: the one place where its wording lives.

Templates are module-level strings (``str.format`` placeholders); the small ``build_*`` functions fill them
from plain records (a scenario is a dict with ``setting``, ``relationship``, ``person1``, ``person2``; a
person is a dict with ``name``, ``occupation``, ``background``, ``goal``, ``secrets``; a turn is a dict with
``participant``, ``speaker``, ``action``, ``text``). Changing any wording here should bump
:data:`PROMPT_VERSION`: it is part of every record id and of the provenance, so old and new data never mix.

Stages and what each prompt shows:

- scenario adaptation (teacher): the seed scenario as JSON, the target culture and its profile;
- role-play (each agent): the rules of the game, the culture's profile, the scenario with both participants'
  public profiles (name, occupation, background), then the agent's own role: who it is, its goal and secret
  (never the other's), then the history and the turn number; the answer is JSON ``{"action", "output"}``.
  The order goes from the most shared to the least shared text (the same rules for every dialogue, the same
  culture for a group, the same scenario for both agents), and the history only grows, so a backend with a
  prefix KV cache computes each shared part once;
- judge: the whole scenario (both goals included) and the transcript; three verdicts, the third a critique
  of the first two;
- intent annotation: both participants' names, occupations and backgrounds (no goals, no secrets), the
  culture's profile, the transcript up to the annotated turn;
- training conversations: the persona of the participant being trained as system prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..culture_profiles import CultureProfile

__all__ = [
    "PROMPT_VERSION",
    "ACTIONS",
    "build_adaptation_conversation",
    "build_roleplay_conversation",
    "build_roleplay_system",
    "build_quality_conversation",
    "build_alignment_conversation",
    "build_meta_conversation",
    "build_intent_system",
    "build_intent_conversation",
    "build_training_persona",
    "training_opening",
    "render_turn_for_history",
    "render_turn_for_training",
    "render_intent_question",
    "render_intent_answer",
    "format_transcript",
]

PROMPT_VERSION = "clca-v2"
"""Version of the wording below; part of every record id and of the provenance."""

ACTIONS = ("none", "non-verbal", "speak", "leave")
"""The role-play actions, as the agents must spell them."""

# ----------------------------------------------------------------------------------------------------------
# Scenario adaptation
# ----------------------------------------------------------------------------------------------------------

ADAPT_SYSTEM = (
    "You are an expert in the world's cultures and an experienced writer of role-play scenarios for social "
    "simulations. You answer with JSON only."
)

ADAPT_USER = """Adapt the social scenario below so that it takes place in {country} and fits {adjective} culture.

{profile}

Keep the structure and the social situation: the same kind of setting, the same relationship between the two \
participants, the same social goal ({social_goal}), and for each participant the same kind of occupation, goal \
and secret. Change what a story set in {country} would change: the names (typical {adjective} names), places, \
institutions, food, money, customs and manners. Write in English and keep every field to one or two sentences.

Scenario:
{scenario_json}

Answer with one JSON object with exactly the keys "setting", "relationship", "person1" and "person2"; each \
person is an object with exactly the keys "name", "occupation", "background", "goal" and "secrets"."""

# ----------------------------------------------------------------------------------------------------------
# Role-play
# ----------------------------------------------------------------------------------------------------------

# The trained participant's persona (system prompt of the training conversations).
PERSONA = """You are {name}, in a conversation with {other_name} in {country}.

Setting: {setting}
Relationship: {relationship}

About you:
- Name: {name}
- Occupation: {occupation}
- Background: {background}
- Your goal in this conversation: {goal}
- Your secret (reveal it only if {name} would): {secrets}

What you know about {other_name}:
- Occupation: {other_occupation}
- Background: {other_background}
You do not know what {other_name} wants from this conversation.

Culture: you both live in {country}. {profile}
Behave, speak and pursue your goal the way a person of this culture would in this situation."""

ROLEPLAY_RULES = """You are playing one of the two participants in a role-play of a social situation. Act, speak and \
pursue your goal the way this person would: stay in character the whole time.

At each turn you choose one action:
- "speak": you say something; "output" holds your words only.
- "non-verbal": a gesture or an action without words; "output" describes it briefly.
- "none": you do nothing this turn; "output" is "".
- "leave": you leave the conversation, once your goal is reached or the outcome is clear; "output" may hold \
your last words.
Answer in English with one JSON object: {"action": "speak" | "non-verbal" | "none" | "leave", "output": "..."}."""

ROLEPLAY_CULTURE = """Culture: both participants live in {country}. {profile}
Behave, speak and pursue your goal the way a person of this culture would in this situation."""

ROLEPLAY_SCENARIO = """Setting: {setting}
Relationship: {relationship}
Participants:
- {name1}. Occupation: {occupation1}. Background: {background1}
- {name2}. Occupation: {occupation2}. Background: {background2}"""

ROLEPLAY_ROLE = """Your role: you are {name}, in a conversation with {other_name}.
- Your goal in this conversation: {goal}
- Your secret (reveal it only if {name} would): {secrets}
You do not know what {other_name} wants from this conversation.
Write only your own turn, as {name}: never write {other_name}'s words or actions."""

ROLEPLAY_TURN = """Conversation so far:
{history}

It is turn {turn} of at most {max_turns}. What do you do now, {name}? Answer with the JSON object only."""

EMPTY_HISTORY = "(The conversation has not started yet: you begin.)"

HISTORY_LINES = {
    "speak": 'Turn {turn}, {speaker} said: "{text}"',
    "non-verbal": "Turn {turn}, {speaker} [non-verbal]: {text}",
    "none": "Turn {turn}, {speaker} did nothing.",
    "leave": 'Turn {turn}, {speaker} left the conversation, saying: "{text}"',
    "leave-silent": "Turn {turn}, {speaker} left the conversation.",
}

# ----------------------------------------------------------------------------------------------------------
# Judge
# ----------------------------------------------------------------------------------------------------------

JUDGE_SYSTEM = "You are a careful and impartial evaluator of role-play dialogues. You answer with JSON only."

DIALOGUE_BLOCK = """Scenario ({country}): {setting}
Relationship: {relationship}
{name1} ({occupation1}): {background1} Goal: {goal1} Secret: {secrets1}
{name2} ({occupation2}): {background2} Goal: {goal2} Secret: {secrets2}

Dialogue:
{transcript}"""

QUALITY_USER = """{dialogue}

Judge the quality of this dialogue. A good dialogue is coherent and natural; each participant stays in \
character, speaks only for themselves and pursues their goal, and the conversation moves forward. A dialogue is \
bad if it is repetitive (the same words, ideas or actions again and again), incoherent, off the scenario, or if \
a participant speaks for the other.

Answer with one JSON object: {{"rationale": "<one or two sentences>", "verdict": "good" | "bad", \
"confidence": "very confident" | "confident" | "not sure"}}."""

ALIGNMENT_USER = """{dialogue}

{profile}

Judge whether the way the participants behave is aligned with {adjective} culture as described above: how \
direct or indirect they are, how they treat status, age and their relationship, how they express disagreement, \
refusal, gratitude or apology, and what they value.

Answer with one JSON object: {{"rationale": "<one or two sentences>", "verdict": "aligned" | "not aligned", \
"confidence": "very confident" | "confident" | "not sure"}}."""

META_USER = """{dialogue}

Two verdicts were given on this dialogue:
- Quality: {quality_verdict} ({quality_confidence}). {quality_rationale}
- Alignment with {adjective} culture: {alignment_verdict} ({alignment_confidence}). {alignment_rationale}

Critique these verdicts: are both correct and well reasoned, given the dialogue? Say "good" if both are sound \
and "bad" if either is wrong.

Answer with one JSON object: {{"critique": "<one or two sentences>", "verdict": "good" | "bad", \
"confidence": "very confident" | "confident" | "not sure"}}."""

# ----------------------------------------------------------------------------------------------------------
# Intents
# ----------------------------------------------------------------------------------------------------------

INTENT_SYSTEM = """You are an expert in {adjective} culture and the social expectations of people in {country}. \
{profile}

You are reading a conversation in {country}.
Setting: {setting}
Relationship: {relationship}
Participants:
- {name1}, {occupation1}. {background1}
- {name2}, {occupation2}. {background2}"""

INTENT_USER = """Conversation up to turn {turn}:
{history}

What is {speaker}'s intent in turn {turn}? Consider the social expectations of {adjective} culture in this \
situation and state the intent in one short sentence.

Answer with one JSON object: {{"intent": "<one short sentence>"}}."""

INTENT_QUESTION = "Turn {turn}, {speaker}: {text}\nWhat is {speaker}'s intent in this turn?"
INTENT_ANSWER = "Intent: {intent}"

# ----------------------------------------------------------------------------------------------------------
# Training conversations
# ----------------------------------------------------------------------------------------------------------

TRAINING_INSTRUCTIONS = (
    "Stay in character as {name} and speak only for yourself. Describe actions without words between asterisks."
)

TRAINING_OPENING = "({other_name} is here with you. The conversation begins: you speak first.)"

TRAINING_TURNS = {
    "speak": "{text}",
    "non-verbal": "*{text}*",
    "none": "*(says nothing)*",
    "leave": "{text} *(leaves)*",
    "leave-silent": "*(leaves)*",
}


# ----------------------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------------------


def _persons(scenario: Mapping[str, Any], participant: int) -> tuple[Mapping[str, str], Mapping[str, str]]:
    if participant not in (1, 2):
        raise ValueError(f"participant must be 1 or 2, got {participant!r}")
    me, other = scenario["person1"], scenario["person2"]
    return (me, other) if participant == 1 else (other, me)


def build_adaptation_conversation(seed: Mapping[str, Any], profile: CultureProfile) -> list[dict[str, str]]:
    """Teacher chat adapting ``seed`` (a seed scenario record) to ``profile``'s culture."""
    culture = profile.culture
    shown = {k: seed[k] for k in ("setting", "relationship", "person1", "person2")}
    user = ADAPT_USER.format(country=culture.name, adjective=culture.adjective, profile=profile.describe(),
                             social_goal=seed.get("social_goal") or "as in the scenario",
                             scenario_json=json.dumps(shown, indent=2, ensure_ascii=False))
    return [{"role": "system", "content": ADAPT_SYSTEM}, {"role": "user", "content": user}]


def build_training_persona(scenario: Mapping[str, Any], participant: int, profile: CultureProfile,
                           instructions: str = TRAINING_INSTRUCTIONS) -> str:
    """System prompt for ``participant`` (1 or 2): the scenario, its own profile, goal and secret, the other's
    public profile, the culture's profile, then ``instructions``."""
    me, other = _persons(scenario, participant)
    persona = PERSONA.format(
        name=me["name"], other_name=other["name"], country=profile.culture.name, setting=scenario["setting"],
        relationship=scenario["relationship"], occupation=me["occupation"], background=me["background"],
        goal=me["goal"], secrets=me["secrets"], other_occupation=other["occupation"],
        other_background=other["background"], profile=profile.describe(),
    )
    return persona + "\n\n" + instructions.format(name=me["name"], other_name=other["name"])


def render_turn_for_history(turn: Mapping[str, Any], index: int) -> str:
    """One transcript line (``index`` is the 1-based turn number)."""
    action, text = turn["action"], (turn.get("text") or "").strip()
    key = "leave-silent" if action == "leave" and not text else action
    return HISTORY_LINES[key].format(turn=index, speaker=turn["speaker"], text=text)


def format_transcript(turns: Sequence[Mapping[str, Any]]) -> str:
    """All turns, one line each; :data:`EMPTY_HISTORY` when there are none."""
    if not turns:
        return EMPTY_HISTORY
    return "\n".join(render_turn_for_history(t, i) for i, t in enumerate(turns, start=1))


def build_roleplay_system(scenario: Mapping[str, Any], participant: int, profile: CultureProfile) -> str:
    """A role-play agent's system prompt, from the most shared part to the least shared: the rules (the
    same for all dialogues), the culture (the same for a culture), the scenario with both participants'
    public profiles (the same for both agents of a dialogue), then ``participant``'s own role, goal and
    secret."""
    me, other = _persons(scenario, participant)
    p1, p2 = scenario["person1"], scenario["person2"]
    parts = [
        ROLEPLAY_RULES,
        ROLEPLAY_CULTURE.format(country=profile.culture.name, profile=profile.describe()),
        ROLEPLAY_SCENARIO.format(setting=scenario["setting"], relationship=scenario["relationship"],
                                 name1=p1["name"], occupation1=p1["occupation"], background1=p1["background"],
                                 name2=p2["name"], occupation2=p2["occupation"], background2=p2["background"]),
        ROLEPLAY_ROLE.format(name=me["name"], other_name=other["name"], goal=me["goal"], secrets=me["secrets"]),
    ]
    return "\n\n".join(parts)


def build_roleplay_conversation(scenario: Mapping[str, Any], participant: int, profile: CultureProfile,
                                turns: Sequence[Mapping[str, Any]], max_turns: int) -> list[dict[str, str]]:
    """The chat asking ``participant`` for turn ``len(turns) + 1``, given the history ``turns``.

    The system prompt is :func:`build_roleplay_system`; the user turn holds the history, then the turn
    number. The prompt at turn t + 2 extends the one at turn t up to the end of the history shown then.
    """
    me, _ = _persons(scenario, participant)
    system = build_roleplay_system(scenario, participant, profile)
    user = ROLEPLAY_TURN.format(history=format_transcript(turns), turn=len(turns) + 1, max_turns=max_turns,
                                name=me["name"])
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _dialogue_block(dialogue: Mapping[str, Any], profile: CultureProfile) -> str:
    p1, p2 = dialogue["person1"], dialogue["person2"]
    return DIALOGUE_BLOCK.format(
        country=profile.culture.name, setting=dialogue["setting"], relationship=dialogue["relationship"],
        name1=p1["name"], occupation1=p1["occupation"], background1=p1["background"], goal1=p1["goal"],
        secrets1=p1["secrets"], name2=p2["name"], occupation2=p2["occupation"], background2=p2["background"],
        goal2=p2["goal"], secrets2=p2["secrets"], transcript=format_transcript(dialogue["turns"]),
    )


def build_quality_conversation(dialogue: Mapping[str, Any], profile: CultureProfile) -> list[dict[str, str]]:
    """Judge chat for the quality verdict of a dialogue record (scenario fields + ``turns``)."""
    user = QUALITY_USER.format(dialogue=_dialogue_block(dialogue, profile))
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def build_alignment_conversation(dialogue: Mapping[str, Any], profile: CultureProfile) -> list[dict[str, str]]:
    """Judge chat for the culture-alignment verdict."""
    user = ALIGNMENT_USER.format(dialogue=_dialogue_block(dialogue, profile), profile=profile.describe(),
                                 adjective=profile.culture.adjective)
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def build_meta_conversation(dialogue: Mapping[str, Any], profile: CultureProfile, quality: Mapping[str, str],
                            alignment: Mapping[str, str]) -> list[dict[str, str]]:
    """Judge chat critiquing the ``quality`` and ``alignment`` verdicts (dicts with ``verdict``,
    ``confidence``, ``rationale``)."""
    user = META_USER.format(
        dialogue=_dialogue_block(dialogue, profile), adjective=profile.culture.adjective,
        quality_verdict=quality["verdict"], quality_confidence=quality["confidence"],
        quality_rationale=quality["rationale"], alignment_verdict=alignment["verdict"],
        alignment_confidence=alignment["confidence"], alignment_rationale=alignment["rationale"],
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def build_intent_system(scenario: Mapping[str, Any], profile: CultureProfile) -> str:
    """The annotator's system prompt: culture expert; both names, occupations, backgrounds; no goals/secrets."""
    p1, p2 = scenario["person1"], scenario["person2"]
    culture = profile.culture
    return INTENT_SYSTEM.format(
        adjective=culture.adjective, country=culture.name, profile=profile.describe(),
        setting=scenario["setting"], relationship=scenario["relationship"], name1=p1["name"],
        occupation1=p1["occupation"], background1=p1["background"], name2=p2["name"],
        occupation2=p2["occupation"], background2=p2["background"],
    )


def build_intent_conversation(dialogue: Mapping[str, Any], profile: CultureProfile,
                              turn_index: int) -> list[dict[str, str]]:
    """Annotator chat asking the intent of turn ``turn_index`` (0-based), showing turns up to it."""
    turns = dialogue["turns"][: turn_index + 1]
    user = INTENT_USER.format(history=format_transcript(turns), turn=turn_index + 1,
                              speaker=turns[-1]["speaker"], adjective=profile.culture.adjective)
    return [{"role": "system", "content": build_intent_system(dialogue, profile)},
            {"role": "user", "content": user}]


def render_turn_for_training(turn: Mapping[str, Any]) -> str:
    """A turn as chat content: words as they are, actions between asterisks."""
    action, text = turn["action"], (turn.get("text") or "").strip()
    key = "leave-silent" if action == "leave" and not text else action
    return TRAINING_TURNS[key].format(text=text)


def training_opening(scenario: Mapping[str, Any], participant: int) -> str:
    """The user message that opens a conversation in which the trained participant speaks first."""
    _, other = _persons(scenario, participant)
    return TRAINING_OPENING.format(other_name=other["name"])


def render_intent_question(turn: Mapping[str, Any], index: int) -> str:
    """User turn of an intent training conversation (``index`` is 1-based)."""
    return INTENT_QUESTION.format(turn=index, speaker=turn["speaker"], text=render_turn_for_training(turn))


def render_intent_answer(intent: str) -> str:
    """Assistant turn of an intent training conversation: ``"Intent: ..."``."""
    return INTENT_ANSWER.format(intent=intent.strip())
