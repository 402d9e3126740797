"""Rewards: problems and their formats, code extraction, graders, reward shaping, pass@k.

Imports only `sandbox` and the standard library, plus tqdm for the command line's progress bar and
math-verify for `MathGrader` (DESIGN.md section 2).
"""

from rewards.grader import TestCaseGrader
from rewards.grades import Failure, Grade, Grader, RewardConfig, pass_at_k, shape_reward
from rewards.interop import as_trl_reward, as_verl_compute_score
from rewards.math_grader import MathGrader
from rewards.problems import Problem, ProblemFormatError, TestCase, load_problems

__all__ = [
    "Failure",
    "Grade",
    "Grader",
    "MathGrader",
    "Problem",
    "ProblemFormatError",
    "RewardConfig",
    "TestCase",
    "TestCaseGrader",
    "as_trl_reward",
    "as_verl_compute_score",
    "load_problems",
    "pass_at_k",
    "shape_reward",
]
