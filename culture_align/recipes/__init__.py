"""Data recipes: each turns seeds and a teacher backend into a training corpus (``datasets.DatasetDict``).

- :mod:`culture_align.recipes.clca` - CLCA: culture-adapted scenarios, role-played dialogues, judge,
  intents, dialogue + intent training conversations.
"""
