"""A continuous point-mass maze (D4RL maze2d layouts) with goals and shortest-path rewards.

Positions are (x, y) in cell units: cell (row r, column c) covers [c, c+1) x [r, r+1). An action
in [-1, 1]^2 moves the point by `step_size * action`, one axis at a time, and a move along an
axis that would enter a wall cell is dropped (so the point never cuts wall corners). The true
distance to a goal is the shortest path through cell centres (BFS over free cells, 4-connected),
which respects walls; the user's true reward is `1 - distance / max distance` in [0, 1].
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# D4RL maze2d layouts: '#' wall, 'O' free.
LAYOUTS: dict[str, str] = {
    "large": """
############
#OOOO#OOOOO#
#O##O#O#O#O#
#OOOOOO#OOO#
#O####O###O#
#OO#O#OOOOO#
##O#O#O#O###
#OO#OOO#OOO#
############
""",
    "medium": """
########
#OO##OO#
#OO#OOO#
##OOO###
#OO#OOO#
#O#OO#O#
#OOO#OO#
########
""",
    "umaze": """
#####
#OOO#
#O#O#
#O#O#
#OOO#
#####
""",
}

# Goal cells (row, column) per layout, in the order goals are added: 2 goals use the first two.
GOAL_CELLS: dict[str, list[tuple[int, int]]] = {
    "large": [(1, 1), (7, 10), (1, 10), (7, 1), (5, 6), (3, 4)],
    "medium": [(1, 1), (6, 6), (1, 6), (6, 1)],
    "umaze": [(1, 1), (1, 3)],
}
GOAL_NAMES = ["A", "B", "C", "D", "E", "F"]


def parse_layout(text: str) -> np.ndarray:
    """A layout string ('#' wall, anything else free) -> (H, W) bool array, True = free."""
    rows = [r for r in text.strip().splitlines() if r.strip()]
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(f"layout row {i} has {len(r)} characters, expected {width}")
    return np.array([[ch != "#" for ch in r] for r in rows], dtype=bool)


def bfs_distances(free: np.ndarray, goal: tuple[int, int]) -> np.ndarray:
    """Shortest-path length in cells from every cell to `goal` (4-connected); inf if unreachable."""
    h, w = free.shape
    if not free[goal]:
        raise ValueError(f"goal cell {goal} is a wall")
    dist = np.full((h, w), np.inf)
    dist[goal] = 0.0
    queue = deque([goal])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and free[nr, nc] and dist[nr, nc] == np.inf:
                dist[nr, nc] = dist[r, c] + 1.0
                queue.append((nr, nc))
    return dist


@dataclass
class Maze:
    """A layout with goal cells, their BFS distance tables and vectorized dynamics."""

    free: np.ndarray
    goals: list[tuple[int, int]]
    step_size: float = 0.4
    goal_radius: float = 0.75
    rbf_width: float = 0.4
    dist_tables: np.ndarray = field(init=False, repr=False)  # (G, H, W)
    max_dist: np.ndarray = field(init=False, repr=False)  # (G,)

    def __post_init__(self) -> None:
        self.free = np.asarray(self.free, dtype=bool)
        self.dist_tables = np.stack([bfs_distances(self.free, g) for g in self.goals])
        finite = np.where(np.isfinite(self.dist_tables), self.dist_tables, 0.0)
        self.max_dist = finite.reshape(len(self.goals), -1).max(1) + 1.0
        r, c = np.nonzero(self.free)
        self.centers = np.stack([c + 0.5, r + 0.5], axis=1).astype(np.float32)  # (F, 2) x, y

    @classmethod
    def from_name(cls, layout: str = "large", n_goals: int = 2, **kw: Any) -> Maze:
        """A named D4RL layout with its first `n_goals` goal cells."""
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; available: {sorted(LAYOUTS)}")
        cells = GOAL_CELLS[layout]
        if not 1 <= n_goals <= len(cells):
            raise ValueError(f"layout {layout!r} has 1..{len(cells)} goals, got {n_goals}")
        return cls(parse_layout(LAYOUTS[layout]), cells[:n_goals], **kw)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return self.free.shape  # type: ignore[return-value]

    @property
    def goal_names(self) -> list[str]:
        """One letter per goal."""
        return GOAL_NAMES[: len(self.goals)]

    def goal_pos(self, g: int) -> np.ndarray:
        """(x, y) of goal g's cell centre."""
        r, c = self.goals[g]
        return np.array([c + 0.5, r + 0.5], dtype=np.float32)

    def is_free(self, pos: np.ndarray) -> np.ndarray:
        """(N,) whether each (x, y) lies in a free cell."""
        h, w = self.shape
        r = np.floor(pos[..., 1]).astype(int)
        c = np.floor(pos[..., 0]).astype(int)
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        return inside & self.free[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]

    def step_positions(self, pos: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Next positions (N, 2): move x, then y, each dropped if it would enter a wall."""
        d = self.step_size * np.clip(action, -1.0, 1.0)
        out = np.array(pos, dtype=np.float32, copy=True)
        for axis in (0, 1):
            cand = out.copy()
            cand[..., axis] += d[..., axis]
            ok = self.is_free(cand)
            out[ok] = cand[ok]
        return out

    def distance(self, pos: np.ndarray, g: int) -> np.ndarray:
        """Shortest-path distance (N,) from positions to goal g, walls respected."""
        pos = np.asarray(pos, dtype=np.float64).reshape(-1, 2)
        h, w = self.shape
        table = self.dist_tables[g]
        r0 = np.clip(np.floor(pos[:, 1]).astype(int), 0, h - 1)
        c0 = np.clip(np.floor(pos[:, 0]).astype(int), 0, w - 1)
        best = np.full(len(pos), np.inf)
        for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            r = np.clip(r0 + dr, 0, h - 1)
            c = np.clip(c0 + dc, 0, w - 1)
            ctr = np.stack([c + 0.5, r + 0.5], axis=1)
            cand = table[r, c] + np.linalg.norm(pos - ctr, axis=1)
            cand[~self.free[r, c]] = np.inf
            best = np.minimum(best, cand)
        return best

    def true_reward(self, pos: np.ndarray, g: int) -> np.ndarray:
        """User g's reward (N,) in [0, 1]: 1 - distance / max distance."""
        return (1.0 - self.distance(pos, g) / self.max_dist[g]).astype(np.float32)

    def sample_free(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n positions (N, 2) uniform over free space."""
        idx = rng.integers(0, len(self.centers), size=n)
        return (self.centers[idx] - 0.5 + rng.random((n, 2))).astype(np.float32)

    def normalize(self, pos: np.ndarray) -> np.ndarray:
        """(x, y) in cell units -> [-1, 1]^2."""
        h, w = self.shape
        scale = np.array([w, h], dtype=np.float32)
        return (2.0 * np.asarray(pos, dtype=np.float32) / scale - 1.0).astype(np.float32)

    def denormalize(self, obs: np.ndarray) -> np.ndarray:
        """Inverse of `normalize`."""
        h, w = self.shape
        return ((np.asarray(obs, dtype=np.float32) + 1.0) * 0.5 * np.array([w, h])).astype(
            np.float32)

    def features(self, pos: np.ndarray) -> np.ndarray:
        """State features (N, 2 + F): normalized (x, y) and a Gaussian bump per free cell."""
        pos = np.asarray(pos, dtype=np.float32).reshape(-1, 2)
        d2 = ((pos[:, None, :] - self.centers[None]) ** 2).sum(-1)  # (N, F)
        rbf = np.exp(-d2 / (2.0 * self.rbf_width**2))
        return np.concatenate([self.normalize(pos), rbf], axis=1).astype(np.float32)

    @property
    def feature_dim(self) -> int:
        """Size of `features` vectors."""
        return 2 + len(self.centers)


class MazeEnv(gym.Env):
    """Gymnasium point-mass maze; obs = normalized (x, y), reward = the goal user's true reward.

    The goal is chosen at construction or with `reset(options={"goal": g})`; an episode ends
    (terminated) when the point is within `goal_radius` of the goal, or is truncated after
    `max_episode_steps`.
    """

    metadata = {"render_modes": []}

    def __init__(self, layout: str = "large", n_goals: int = 2, goal: int = 0,
                 max_episode_steps: int = 150, maze: Maze | None = None) -> None:
        super().__init__()
        self.maze = maze if maze is not None else Maze.from_name(layout, n_goals)
        self.goal = goal
        self.max_episode_steps = max_episode_steps
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self._pos = np.zeros(2, dtype=np.float32)
        self._t = 0

    def _obs(self) -> np.ndarray:
        return np.clip(self.maze.normalize(self._pos), -1.0, 1.0).astype(np.float32)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start at options['start'] (x, y) or uniformly in free space; options['goal'] sets g."""
        super().reset(seed=seed)
        options = options or {}
        if "goal" in options:
            self.goal = int(options["goal"])
        if "start" in options:
            self._pos = np.asarray(options["start"], dtype=np.float32)
        else:
            self._pos = self.maze.sample_free(1, self.np_random)[0]
        self._t = 0
        return self._obs(), {"distance": float(self.maze.distance(self._pos, self.goal)[0])}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Move the point; reward is 1 - normalized shortest-path distance to the goal."""
        self._pos = self.maze.step_positions(self._pos[None], np.asarray(action)[None])[0]
        self._t += 1
        dist = float(self.maze.distance(self._pos, self.goal)[0])
        reward = 1.0 - dist / float(self.maze.max_dist[self.goal])
        terminated = dist <= self.maze.goal_radius
        truncated = self._t >= self.max_episode_steps
        return self._obs(), reward, terminated, truncated, {"distance": dist,
                                                            "is_success": terminated}
