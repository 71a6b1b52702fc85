"""A tiny two-goal maze shared by the control tests."""

from __future__ import annotations

from vpl.control.maze import Maze, parse_layout

TINY = """
#####
#O#O#
#OOO#
#####
"""


def tiny_maze() -> Maze:
    return Maze(parse_layout(TINY), [(1, 1), (1, 3)])
