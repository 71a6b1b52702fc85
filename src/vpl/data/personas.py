"""Synthetic persona preferences: answers that vary in detail, formality, examples and caution.

Each response to an everyday question is composed from fragments so that its four attribute
levels are visible in the text: ``detail`` (1 + level informative sentences), ``formality``
(slangy lower case ... formal register), ``examples`` (level concrete examples) and ``caution``
(level safety caveats). Users score a response by ``w . levels`` (see `user_utility`).

References: in the spirit of UltraFeedback-P in Poddar et al., "Personalizing Reinforcement
Learning from Human Feedback with Variational Preference Learning", NeurIPS 2024.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

ATTRIBUTES: tuple[str, ...] = ("detail", "formality", "examples", "caution")
LEVELS = 4  # every attribute takes integer levels 0..LEVELS-1
USER_SETS: dict[str, tuple[str, ...]] = {
    "2": ("detail", "caution"),
    "4": ATTRIBUTES,
    "continuous": (),
}
_TIE_TOL = 1e-9


@dataclass(frozen=True)
class _Question:
    topic: str
    prompt: str
    facts: tuple[str, ...]  # ordered by importance; at least LEVELS
    examples: tuple[str, ...]  # clauses completing "For example, ..."; at least LEVELS - 1


_CAVEATS: dict[str, tuple[str, ...]] = {
    "cooking": (
        "Be careful with hot oil and sharp knives, and keep pan handles turned away from the "
        "edge of the stove.",
        "Cook chicken and other poultry all the way through, and keep raw meat away from food "
        "that will not be cooked.",
        "Check labels for allergens if you are cooking for other people.",
    ),
    "travel": (
        "Check the entry and visa rules for your destination well before you leave.",
        "Keep copies of your passport and insurance details somewhere separate from the "
        "originals.",
        "Airline rules on baggage and liquids change, so confirm them with your carrier.",
    ),
    "coding": (
        "Never paste passwords or API keys into code that you share or commit.",
        "Back up your work with version control before making large changes.",
        "Advice found online can be outdated, so check it against the official documentation.",
    ),
    "fitness": (
        "If you have a heart condition or an injury, talk to a doctor before starting.",
        "Stop if you feel sharp pain, dizziness or chest tightness.",
        "Increase the load slowly, since doing too much too soon is the most common cause of "
        "injury.",
    ),
    "money": (
        "This is general information, not personal financial advice.",
        "Be wary of anyone promising guaranteed high returns.",
        "Read the fees and terms carefully before you sign anything.",
    ),
    "gardening": (
        "Wear gloves when handling soil, compost or fertiliser, and wash your hands afterwards.",
        "Some common plants are toxic to children and pets, so check before you buy.",
        "Keep pesticides in their original containers and out of reach of children.",
    ),
    "home repair": (
        "Turn off the water or power supply before you start work.",
        "If you are unsure about anything electrical or structural, call a qualified "
        "professional.",
        "Wear eye protection when drilling, cutting or sanding.",
    ),
    "sleep": (
        "If poor sleep lasts for weeks or you snore loudly and wake gasping, see a doctor.",
        "Do not combine sleep aids with alcohol.",
        "Avoid driving when you feel drowsy.",
    ),
    "studying": (
        "Cutting sleep to study usually hurts memory more than it helps.",
        "If stress becomes overwhelming, talk to someone you trust or a counsellor.",
        "Check your course's rules on collaboration and on using outside material.",
    ),
    "photography": (
        "Do not step into traffic or near cliff edges to get a shot.",
        "Ask before photographing people, and respect local rules about where photos are "
        "allowed.",
        "Keep your equipment dry, and never point a camera directly at the sun.",
    ),
}

# Two questions per topic: the first is a train question, the second a test question.
_QUESTIONS: tuple[tuple[_Question, _Question], ...] = (
    (
        _Question(
            "cooking", "How can I cook healthy dinners on a busy weeknight?",
            ("Plan three or four dinners at the start of the week so you shop only once.",
             "Cook a large batch of a grain such as rice on Sunday and reuse it over several "
             "days.",
             "Sheet-pan meals let you roast protein and vegetables together with one tray to "
             "wash.",
             "Keep frozen vegetables on hand, because they are as nutritious as fresh ones and "
             "never spoil."),
            ("a tray of chicken thighs with carrots and onions roasts in about 35 minutes",
             "a stir-fry of tofu, broccoli and leftover rice takes 15 minutes",
             "lentil soup made in one pot keeps for four days in the fridge"),
        ),
        _Question(
            "cooking", "What is a good way to start baking bread at home?",
            ("Start with a simple loaf made from flour, water, salt and dried yeast.",
             "Weigh your ingredients with a scale instead of using cups for consistent results.",
             "Let the dough rise until it has roughly doubled in size, which often takes one to "
             "two hours.",
             "Bake until the loaf sounds hollow when you tap the bottom."),
            ("a no-knead loaf rests overnight and bakes in a covered pot",
             "focaccia needs only one rise and forgives uneven shaping",
             "soda bread uses baking soda instead of yeast and is ready within an hour"),
        ),
    ),
    (
        _Question(
            "travel", "How should I pack for a week-long trip with only a carry-on?",
            ("Choose clothes in two or three colours that all combine with each other.",
             "Roll your clothes instead of folding them to save space and reduce creases.",
             "Wear your bulkiest shoes and jacket on the plane.",
             "Plan to wash a few items midweek so you can pack for four days instead of seven."),
            ("a pair of dark trousers works both for hiking and for dinner out",
             "packing cubes keep tops, underwear and chargers separated",
             "solid shampoo bars avoid the liquid limits entirely"),
        ),
        _Question(
            "travel", "How can I make a long-haul flight more comfortable?",
            ("Choose an aisle seat if you like to move around, or a window seat if you want to "
             "sleep.",
             "Drink water regularly, because cabin air is very dry.",
             "Get up and walk the aisle every couple of hours to keep your circulation going.",
             "Bring layers, since cabin temperatures swing between warm and cold."),
            ("a memory-foam neck pillow keeps your head from dropping forward",
             "noise-cancelling headphones cut out most of the engine hum",
             "compression socks reduce swollen ankles on flights over six hours"),
        ),
    ),
    (
        _Question(
            "coding", "How do I start learning Python as a beginner?",
            ("Install a recent version of Python and a simple editor such as VS Code.",
             "Work through the basics of variables, loops, functions and lists in order.",
             "Write a small program every day, even if it is only ten lines long.",
             "Read error messages carefully, because they usually point to the exact line that "
             "failed."),
            ("a script that renames all the photos in a folder by date",
             "a tiny number-guessing game that runs in the terminal",
             "a program that reads a spreadsheet and totals one column"),
        ),
        _Question(
            "coding", "How can I make my code easier for teammates to review?",
            ("Keep each change small and focused on one purpose.",
             "Write a short description explaining why the change is needed.",
             "Use clear names for variables and functions so the code explains itself.",
             "Add tests that show the new behaviour and run them before asking for review."),
            ("splitting a refactor and a bug fix into two separate pull requests",
             "renaming a variable from tmp2 to unpaid_invoices",
             "adding a test that reproduces the bug before fixing it"),
        ),
    ),
    (
        _Question(
            "fitness", "How can I start running if I have never exercised?",
            ("Begin with intervals of one minute of jogging followed by two minutes of walking.",
             "Run three times a week with a rest day between sessions.",
             "Keep the pace slow enough that you could still hold a conversation.",
             "Buy shoes that fit well and feel comfortable rather than the most expensive pair."),
            ("a couch-to-5K plan builds up to thirty minutes of running over nine weeks",
             "a flat loop around a local park makes pacing easy",
             "a running app can announce when to switch between jogging and walking"),
        ),
        _Question(
            "fitness", "How do I build strength at home without equipment?",
            ("Focus on a few compound movements such as squats, push-ups and lunges.",
             "Train each movement two or three times a week.",
             "Make exercises harder over time by slowing them down or adding repetitions.",
             "Rest for one to two minutes between sets so you can keep good form."),
            ("incline push-ups against a kitchen counter are a good starting point",
             "a backpack filled with books turns squats into weighted squats",
             "a sturdy chair is enough for step-ups and triceps dips"),
        ),
    ),
    (
        _Question(
            "money", "How can I build an emergency fund on a modest salary?",
            ("Set a first target of one month of essential expenses.",
             "Move a fixed amount into a separate savings account automatically on payday.",
             "Review your subscriptions and cancel the ones you rarely use.",
             "Put unexpected income, such as a tax refund, straight into the fund."),
            ("saving 50 a week adds up to 2,600 in a year",
             "cancelling two unused streaming services can free up 20 a month",
             "rounding up card purchases into a savings pot builds the fund quietly"),
        ),
        _Question(
            "money", "What should I think about before taking out a car loan?",
            ("Compare the total cost of the loan, not just the monthly payment.",
             "Get a pre-approved offer from a bank or credit union before visiting a dealer.",
             "Keep the loan term as short as you can comfortably afford.",
             "Include insurance, fuel and maintenance when you work out whether the car fits "
             "your budget."),
            ("a five-year loan has lower payments but can cost far more in interest than a "
             "three-year loan",
             "a larger down payment can lower the interest rate you are offered",
             "a slightly older used car often avoids the steepest depreciation"),
        ),
    ),
    (
        _Question(
            "gardening", "How do I grow tomatoes on a balcony?",
            ("Use a container that holds at least 20 litres of potting mix.",
             "Place the plant where it gets six to eight hours of direct sun.",
             "Water deeply whenever the top few centimetres of soil feel dry.",
             "Support the stem with a stake or cage as the plant grows."),
            ("cherry tomatoes such as Sungold do well in pots",
             "a self-watering container keeps moisture steady on hot days",
             "feeding with a tomato fertiliser every two weeks once flowers appear boosts the "
             "harvest"),
        ),
        _Question(
            "gardening", "How can I keep my houseplants alive?",
            ("Match each plant to the light in its spot before anything else.",
             "Water only when the top of the soil is dry, since overwatering kills more plants "
             "than underwatering.",
             "Use pots with drainage holes so roots never sit in water.",
             "Feed lightly during spring and summer and hardly at all in winter."),
            ("a snake plant copes with a dim corner and occasional watering",
             "a pothos trailing from a shelf shows droopy leaves when it needs water",
             "a peace lily tolerates shade and tells you when it is thirsty"),
        ),
    ),
    (
        _Question(
            "home repair", "How do I fix a dripping kitchen tap?",
            ("Identify whether the tap uses a washer or a ceramic cartridge.",
             "Remove the handle and unscrew the valve to reach the worn part.",
             "Take the old washer or cartridge to a hardware shop so you can match it exactly.",
             "Reassemble the tap and turn the water back on slowly to check for leaks."),
            ("a rubber washer that has gone hard and flat is a common culprit",
             "a quarter-turn mixer tap usually needs a new ceramic cartridge",
             "a worn O-ring often causes leaks around the base of the spout"),
        ),
        _Question(
            "home repair", "How can I patch a small hole in drywall?",
            ("Clean loose material from around the hole.",
             "Cover holes larger than a coin with a self-adhesive mesh patch.",
             "Spread thin layers of filler, letting each one dry before the next.",
             "Sand the area smooth and prime it before painting."),
            ("a screw hole needs only a dab of filler and a quick sanding",
             "a doorknob dent can be covered with a 10 cm mesh patch",
             "lightweight spackle dries quickly enough to paint the same day"),
        ),
    ),
    (
        _Question(
            "sleep", "How can I fall asleep faster at night?",
            ("Go to bed and wake up at the same time every day, including weekends.",
             "Keep your bedroom dark, quiet and slightly cool.",
             "Avoid caffeine in the eight hours before bed.",
             "Put screens away for the last half hour of the evening."),
            ("reading a paper book under a dim lamp helps many people wind down",
             "a 4-7-8 breathing pattern slows your heart rate",
             "writing tomorrow's to-do list before bed stops your mind from racing"),
        ),
        _Question(
            "sleep", "How do I adjust to a new time zone quickly?",
            ("Shift your sleep schedule by an hour a day for a few days before you travel.",
             "Get bright daylight in the morning at your destination.",
             "Eat meals at local times from the first day.",
             "Keep any naps shorter than thirty minutes."),
            ("a morning walk outside after an eastward flight resets your clock faster",
             "an eye mask and earplugs help you sleep in a bright hotel room",
             "setting your watch to destination time on the plane helps you think in local "
             "hours"),
        ),
    ),
    (
        _Question(
            "studying", "How can I study more effectively for exams?",
            ("Test yourself instead of rereading your notes.",
             "Spread your revision over several weeks rather than cramming.",
             "Mix different topics within one session.",
             "Explain concepts out loud as if you were teaching someone."),
            ("flashcards with a question on one side and the answer on the other",
             "doing past exam papers under timed conditions",
             "a 25-minute focus block followed by a five-minute break"),
        ),
        _Question(
            "studying", "How do I learn vocabulary in a new language?",
            ("Learn words in context, inside short sentences, rather than as isolated lists.",
             "Review new words at increasing intervals.",
             "Focus first on the few thousand most frequent words.",
             "Use each new word in your own speaking or writing within a day."),
            ("a spaced-repetition app that schedules reviews for you",
             "labelling objects around your home with sticky notes",
             "keeping a notebook of phrases heard in podcasts or shows"),
        ),
    ),
    (
        _Question(
            "photography", "How can I take better photos with my phone?",
            ("Clean the lens before shooting, since smudges blur everything.",
             "Use natural light and keep the sun behind or beside you.",
             "Tap the screen to set focus and exposure on your subject.",
             "Turn on the grid and place key elements along its lines."),
            ("a portrait near a window in the late afternoon looks soft and warm",
             "a landscape with the horizon on the lower third line feels balanced",
             "a close-up of food taken from directly above keeps plates in focus"),
        ),
        _Question(
            "photography", "How do I photograph the night sky?",
            ("Go somewhere far from city lights on a moonless night.",
             "Put the camera on a tripod so it stays perfectly still.",
             "Use a wide aperture and an exposure of about 15 to 25 seconds.",
             "Focus manually on a bright star using the magnified live view."),
            ("the Milky Way core is easiest to see in summer in the northern hemisphere",
             "a two-second timer avoids shaking the camera when you press the shutter",
             "a foreground tree or rock gives the stars a sense of scale"),
        ),
    ),
)

_EXAMPLE_LEADS = ("For example, ", "As another example, ", "One more example: ")
_OPENERS: tuple[tuple[str, ...], ...] = (
    ("ok so ", "yo, ", "lol ok so "),
    ("Sure thing! ", "Oh, good one! ", "Happy to help! "),
    ("", "", ""),
    ("Certainly. Please find my recommendations below. ",
     "Thank you for your question; the following considerations apply. ",
     "I would be pleased to advise. "),
)
_CLOSERS: tuple[tuple[str, ...], ...] = (
    (" hope that helps lol", " u got this!!", " easy peasy tbh"),
    (" Good luck!", " Have fun with it!", " You've got this!"),
    ("", "", ""),
    (" I trust this information proves useful.",
     " Should you require further clarification, please do not hesitate to ask.",
     " I hope these recommendations are of assistance."),
)
_CONTRACTIONS = (
    ("do not", "don't"), ("does not", "doesn't"), ("it is", "it's"), ("you are", "you're"),
    ("cannot", "can't"), ("will not", "won't"), ("is not", "isn't"), ("that is", "that's"),
    ("you will", "you'll"), ("they are", "they're"), ("you have", "you've"),
)
_SLANG = (
    ("you're", "ur"), ("going to", "gonna"), ("want to", "wanna"), ("you", "u"), ("your", "ur"),
    ("because", "cuz"), ("really", "rly"), ("though", "tho"),
)


def _compile(pairs: Sequence[tuple[str, str]]) -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple((re.compile(rf"\b{re.escape(w)}\b"), r)
                 for a, b in pairs for w, r in ((a, b), (a.capitalize(), b.capitalize())))


_CONTRACTION_RES = _compile(_CONTRACTIONS)
_SLANG_RES = _compile(_SLANG)


def _sub_words(text: str, patterns: Sequence[tuple[re.Pattern[str], str]]) -> str:
    for pattern, replacement in patterns:
        text = pattern.sub(replacement, text)
    return text


def questions(split: str) -> tuple[_Question, ...]:
    """The questions of one split ("train" or "test"); the two splits share no question."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    return tuple(pair[0 if split == "train" else 1] for pair in _QUESTIONS)


def render_response(question: _Question, levels: Mapping[str, int], style: int = 0) -> str:
    """Compose a response whose text shows the given attribute levels; style picks wording."""
    for a in ATTRIBUTES:
        if not 0 <= levels[a] < LEVELS:
            raise ValueError(f"attribute {a!r} level {levels[a]} outside 0..{LEVELS - 1}")
    return _render(question, tuple(levels[a] for a in ATTRIBUTES), style % 3)


@cache
def _render(question: _Question, level_tuple: tuple[int, ...], s: int) -> str:
    levels = dict(zip(ATTRIBUTES, level_tuple, strict=True))
    parts = list(question.facts[: levels["detail"] + 1])
    parts += [lead + ex + "." for lead, ex in
              zip(_EXAMPLE_LEADS, question.examples[: levels["examples"]], strict=False)]
    parts += list(_CAVEATS[question.topic][: levels["caution"]])
    body = " ".join(parts)
    f = levels["formality"]
    if f <= 1:
        body = _sub_words(body, _CONTRACTION_RES)
    if f == 0:
        body = _sub_words(body, _SLANG_RES).lower()
    return (_OPENERS[f][s] + body + _CLOSERS[f][s]).strip()


def user_utility(weights: Sequence[float] | Mapping[str, float],
                 attributes: Mapping[str, int]) -> float:
    """Utility ``w . levels`` of a response; weights follow ATTRIBUTES order or name them."""
    if isinstance(weights, Mapping):
        return float(sum(weights.get(a, 0.0) * attributes[a] for a in ATTRIBUTES))
    if len(weights) != len(ATTRIBUTES):
        raise ValueError(f"expected {len(ATTRIBUTES)} weights in order {ATTRIBUTES}, "
                         f"got {len(weights)}")
    return float(sum(w * attributes[a] for w, a in zip(weights, ATTRIBUTES, strict=True)))


def _differing_levels(rng: random.Random) -> tuple[dict[str, int], dict[str, int]]:
    """Two level vectors that differ on every attribute (so type users never tie)."""
    a = {k: rng.randrange(LEVELS) for k in ATTRIBUTES}
    b = {k: rng.choice([v for v in range(LEVELS) if v != a[k]]) for k in ATTRIBUTES}
    return a, b


def _user_weights(users: str, index: int, np_rng: np.random.Generator
                  ) -> tuple[str, list[float]]:
    if users == "continuous":
        w = np_rng.dirichlet(np.ones(len(ATTRIBUTES)))
        return ATTRIBUTES[int(np.argmax(w))], [float(x) for x in w]
    types = USER_SETS[users]
    user_type = types[index % len(types)]
    return user_type, [float(a == user_type) for a in ATTRIBUTES]


def generate_personas(users: str = "4", seed: int = 0, users_per_type: int = 60,
                      test_users_per_type: int = 20, pairs_per_user: int = 40
                      ) -> tuple[list[dict], list[dict]]:
    """Return (train_records, test_records) for "2", "4" or "continuous" users.

    Type users number ``users_per_type`` per type; continuous users (Dirichlet(1,1,1,1)
    weights) number ``users_per_type * 4`` in train and ``test_users_per_type * 4`` in test.
    Test users and test questions never appear in train.
    """
    if users not in USER_SETS:
        raise ValueError(f"unknown personas users {users!r}; expected one of {tuple(USER_SETS)}")
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    n_types = len(USER_SETS[users]) or len(ATTRIBUTES)
    out: dict[str, list[dict]] = {"train": [], "test": []}
    for split, n_per_type in (("train", users_per_type), ("test", test_users_per_type)):
        pool = questions(split)
        for i in range(n_per_type * n_types):
            user_type, weights = _user_weights(users, i, np_rng)
            user_id = f"personas-{split}-{i:04d}"
            for _ in range(pairs_per_user):
                q = rng.choice(pool)
                la, lb = _differing_levels(rng)
                ta = render_response(q, la, rng.randrange(3))
                tb = render_response(q, lb, rng.randrange(3))
                diff = user_utility(weights, la) - user_utility(weights, lb)
                tie = abs(diff) < _TIE_TOL
                a_wins = rng.random() < 0.5 if tie else diff > 0
                (c, ca), (r, ra) = ((ta, la), (tb, lb)) if a_wins else ((tb, lb), (ta, la))
                record: dict[str, Any] = {
                    "user_id": user_id,
                    "prompt": q.prompt,
                    "chosen": c,
                    "rejected": r,
                    "user_type": user_type,
                    "user_weights": list(weights),
                    "chosen_attributes": ca,
                    "rejected_attributes": ra,
                    "tie": tie,
                    "topic": q.topic,
                }
                out[split].append(record)
    return out["train"], out["test"]
