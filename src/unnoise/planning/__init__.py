"""Planning with diffusion in self-contained mazes: a point mass in the D4RL Maze2D layouts (maze.py), PD
control, A* expert and random waypoint walks (control.py), trajectory windows as data (dataset.py),
inpainting / policy / value guidance as denoiser transforms (guidance.py), goal-conditioned behaviour cloning
(policy.py), receding-horizon diffusion planning (planner.py), pictures (draw.py) and scores (scores.py).

Kept import-free: data/__init__ registers `maze` from dataset.py, which must not pull in the pipeline."""
