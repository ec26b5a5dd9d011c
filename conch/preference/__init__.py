"""Preference tuning: preference data (pairs, KTO records), DPO/KTO/reward model/PPO helpers, evaluation.

See docs/preference.md.
"""
