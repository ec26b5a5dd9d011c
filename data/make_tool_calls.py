"""Generate a small tool-calling dataset in LLaMA-Factory's sharegpt tool format (like its glaive_toolcall demo).

Records offer one tool in their `tools` column (a JSON string, as LLaMA-Factory reads it): get_weather,
taking a city. A weather question is answered by a `function_call` turn (JSON {"name", "arguments"}), the
tool's `observation`, and an answer that says what the tool said; greetings and questions no tool answers
get a plain answer, the tool offered or not. The vocabulary is small (a dozen cities, six conditions) so
that even conch's scratch model learns the format and to read the tool's answer in a couple of minutes on a
CPU (config/tools.yaml).

Writes raw/tool_calls_en.json. Deterministic (random.Random(7)); regenerate with
`python data/make_tool_calls.py`.
"""

import json
import random
from pathlib import Path

RAW = Path(__file__).resolve().parent / "raw"
rng = random.Random(7)

# One short tool: its description is in every prompt, and training time grows with the prompt.
TOOLS = [
    {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
# fmt: off
CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome",
          "Oslo", "Cairo", "Lima", "Seoul", "Dublin", "Vienna"]
# fmt: on
CONDITIONS = ["sunny", "rainy", "cloudy", "snowy", "windy", "foggy"]
ASK = [
    "What is the weather in {}?",
    "How is the weather in {}?",
    "Tell me the weather in {}.",
    "What's the weather like in {}?",
    "weather in {}?",
]
CHAT = [
    ("Hello!", "Hello! I can tell you the weather in a city."),
    ("Hi there.", "Hello! I can tell you the weather in a city."),
    ("Hey!", "Hello! I can tell you the weather in a city."),
    ("Good morning!", "Good morning! I can tell you the weather in a city."),
    ("Good evening.", "Good evening! I can tell you the weather in a city."),
    ("Who are you?", "I am a helpful assistant with a weather tool."),
    ("What are you?", "I am a helpful assistant with a weather tool."),
    ("What is your name?", "I am a helpful assistant with a weather tool."),
    ("What can you do?", "I can tell you the weather in a city."),
    ("How can you help me?", "I can tell you the weather in a city."),
    ("Can you help me?", "Yes. Ask me about the weather in a city."),
    ("I have a question.", "Yes. Ask me about the weather in a city."),
    ("Thank you!", "You are welcome."),
    ("Thanks a lot.", "You are welcome."),
    ("Thanks, that helps.", "You are welcome."),
    ("Great, thank you.", "You are welcome."),
    ("Tell me a joke.", "I only know about the weather."),
    ("What is your favourite colour?", "I only know about the weather."),
    ("What time is it?", "I only know about the weather."),
    ("How old are you?", "I only know about the weather."),
    ("What is two plus two?", "I only know about the weather."),
    ("Sing me a song.", "I only know about the weather."),
    ("Do you like cats?", "I only know about the weather."),
    ("Where do you live?", "I only know about the weather."),
    ("Goodbye.", "Goodbye!"),
    ("Bye!", "Goodbye!"),
    ("See you later.", "Goodbye!"),
    ("Good night.", "Goodbye!"),
]
WEATHER_RECORDS = 200


def turn(role: str, value) -> dict:
    return {"from": role, "value": value if isinstance(value, str) else json.dumps(value)}


def weather_record(ask: str, city: str, condition: str) -> dict:
    return {
        "conversations": [
            turn("human", ask.format(city)),
            turn("function_call", {"name": "get_weather", "arguments": {"city": city}}),
            turn("observation", {"city": city, "condition": condition}),
            turn("gpt", f"It is {condition}."),
        ],
        "tools": json.dumps(TOOLS),
    }


def main() -> None:
    # Distinct (question, city, condition) triples: the model must read the city and the tool's answer.
    triples = [(a, c, w) for a in ASK for c in CITIES for w in CONDITIONS]
    records = [weather_record(*t) for t in rng.sample(triples, WEATHER_RECORDS)]
    # Questions no tool answers: a plain answer, with the tools offered (most) or without.
    for i, (question, answer) in enumerate(CHAT):
        tools = json.dumps(TOOLS) if i % 3 else ""
        records.append({"conversations": [turn("human", question), turn("gpt", answer)], "tools": tools})
    rng.shuffle(records)
    RAW.mkdir(exist_ok=True)
    (RAW / "tool_calls_en.json").write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
