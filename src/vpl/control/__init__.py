"""Control: a gymnasium maze, offline preference data, reward relabeling and latent-conditioned
offline RL (the maze experiment of VPL)."""

from vpl.control.maze import LAYOUTS, Maze, MazeEnv, bfs_distances, parse_layout
from vpl.control.offline import MazeData, MazeDataConfig, make_maze_data
from vpl.control.policy import IQLSettings, LatentPolicy, load_policy, save_policy
from vpl.control.rewards import REWARDS, LearnedReward, RewardConfig
from vpl.control.run import ControlConfig, run_control

__all__ = [
    "LAYOUTS", "REWARDS", "ControlConfig", "IQLSettings", "LatentPolicy", "LearnedReward",
    "Maze", "MazeData", "MazeDataConfig", "MazeEnv", "RewardConfig", "bfs_distances",
    "load_policy", "make_maze_data", "parse_layout", "run_control", "save_policy",
]
