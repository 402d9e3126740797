"""Rewards: problems and their formats (graders, reward shaping and pass@k are built on these).

Imports only `sandbox` and the standard library (DESIGN.md section 2).
"""

from rewards.problems import Problem, ProblemFormatError, TestCase, load_problems

__all__ = ["Problem", "ProblemFormatError", "TestCase", "load_problems"]
