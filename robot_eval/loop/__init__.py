"""Closed loop: collect -> train -> roll out every checkpoint -> analyze the logs -> score the workflow's picks.

`offrl-eval loop SCENARIO --preset quick|full --jobs N --out DIR` (robot_eval/loop/run.py); method and results in
docs/closed_loop.md.
"""
