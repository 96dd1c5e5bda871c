"""`culture-align experiment`: held-out splits, baselines, culture controls, seeds and CIs from one experiment YAML
(examples/experiments/; see :mod:`culture_align.experiments.config`).

Here ``--config`` is that experiment YAML, not a flat file of these options (the other commands' meaning of
``--config``): the experiment file already holds everything a run needs, and the options below only override its
data, choose its run folder, or run part of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .config import parse_command

__all__ = ["experiment_main", "parse_experiment_args", "ExperimentArguments"]


@dataclass
class ExperimentArguments:
    """The options of ``culture-align experiment``."""

    experiment_config: str = field(metadata={
        "aliases": ["--config"],
        "help": "The experiment YAML (culture_align.experiments.config; examples/experiments/): the experiment "
                "itself, not a flat file of these options (required)."})
    out: str | None = field(default=None, metadata={
        "help": "Run folder (default: the config's output_dir, or runs/experiments/<name>)."})
    wvs: str | None = field(default=None, metadata={"help": "Human data, overriding the config's `wvs`."})
    dry_run: bool = field(default=False, metadata={
        "help": "Print the plan (splits, sizes, optimizer steps) and stop."})
    conditions: Sequence[str] | None = field(default=None, metadata={
        "help": "Run only these trained conditions (comma-separated names); processes given disjoint sets can "
                "share one run folder, and a last run without the option reuses what they trained and reports "
                "every condition."})


def parse_experiment_args(argv: Sequence[str] | None) -> ExperimentArguments:
    """``experiment``'s options (``--config`` is the experiment YAML), condition names split at commas."""
    from .config import split_list

    (args,) = parse_command((ExperimentArguments,), argv, prog="culture-align experiment", description=__doc__,
                            config_file=False)
    args.conditions = split_list(args.conditions)
    return args


def experiment_main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) an experiment, or print its plan."""
    from ..experiments import ExperimentConfig, ExperimentRunner
    from .checks import check_output_dir

    args = parse_experiment_args(argv)
    config = ExperimentConfig.from_yaml(args.experiment_config)
    if args.wvs:
        config.wvs = args.wvs
    if args.conditions:
        config = config.only_conditions(args.conditions)
    runner = ExperimentRunner(config, output_dir=args.out)
    check_output_dir(runner.output_dir, "the run folder (--out or output_dir)")  # before any model is loaded
    if args.dry_run:
        print("\n".join(runner.plan()))
        return 0
    payload = runner.run()
    print((runner.output_dir / "report.md").read_text())
    print(f"Written to {runner.output_dir} ({payload['timings_seconds']['total']:.0f} s)")
    return 0
