"""The benchmark's questions: distinct chat questions, so no server can answer a repeat from a cache."""

from __future__ import annotations

TEMPLATES = [
    "Should I {}?",
    "Is it a good idea to {}?",
    "Can I {} today?",
    "Will I {} tomorrow?",
    "我应该{}吗？",
    "Tell me whether to {}.",
    "Oh Magic Conch, should I {}?",
    "Do you think I can {}?",
]
ACTIONS = [
    "ask for a raise",
    "learn Python",
    "go fishing",
    "eat a sandwich",
    "visit the sea",
    "buy a boat",
    "call my friend",
    "sing a song",
    "read a book",
    "plant a tree",
    "paint the fence",
    "take a nap",
    "bake bread",
    "climb a hill",
    "watch the stars",
    "cook dinner",
    "write a letter",
    "ride a bike",
    "clean my room",
    "feed the cat",
    "build a sandcastle",
    "play the clarinet",
    "go jellyfishing",
    "open a restaurant",
    "study for the test",
    "fly a kite",
    "wash the car",
    "adopt a snail",
]
WHEN = ["", " this week", " after lunch", " with my friends"]
QUESTIONS = len(TEMPLATES) * len(ACTIONS) * len(WHEN)  # 896


def question(n: int) -> str:
    """The n-th question; the first QUESTIONS are all different."""
    action = (
        ACTIONS[(n // len(TEMPLATES)) % len(ACTIONS)]
        + WHEN[(n // len(TEMPLATES) // len(ACTIONS)) % len(WHEN)]
    )
    return TEMPLATES[n % len(TEMPLATES)].format(action)
