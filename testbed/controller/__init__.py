"""The central controller of seed 002 (Fig. 1): Deployment, Monitor, Planner, Central Database."""
