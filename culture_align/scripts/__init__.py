"""Entry points behind `culture-align generate|train` and the scripts in examples/."""
