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

# One (train question, test question) pair per topic; more train questions follow in
# `_EXTRA_TRAIN_QUESTIONS`.
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

# Extra train-only questions, three per topic, so that each topic has four train questions
# (the first element of its `_QUESTIONS` pair plus these) and one test question.
_EXTRA_TRAIN_QUESTIONS: tuple[_Question, ...] = (
    _Question(
        "cooking", "How do I cook rice so it is not sticky or mushy?",
        ("Rinse the rice in cold water until the water runs almost clear.",
         "Measure the water carefully, using about one and a half cups per cup of long-grain "
         "rice.",
         "Keep the lid on and the heat low once the water comes to a boil.",
         "Let the rice rest off the heat for ten minutes before fluffing it with a fork."),
        ("basmati rice turns out light and separate when rinsed well",
         "a rice cooker switches itself off when the water is absorbed",
         "a pinch of salt and a little butter in the pot add flavour"),
    ),
    _Question(
        "cooking", "How can I waste less food in my kitchen?",
        ("Check what is already in the fridge before you write a shopping list.",
         "Store older food at the front of the shelves so it gets used first.",
         "Freeze bread, meat and ripe fruit before they go off.",
         "Plan one meal a week built entirely from leftovers."),
        ("soft bananas can be frozen and blended into smoothies",
         "vegetable peelings can be simmered into a simple stock",
         "stale bread makes good breadcrumbs or croutons"),
    ),
    _Question(
        "cooking", "Which kitchen tools does a beginner cook really need?",
        ("Buy one good chef's knife before anything else.",
         "Use a large wooden or plastic chopping board that stays put on the counter.",
         "Get one heavy frying pan and one medium saucepan with a lid.",
         "Add a few basics such as a peeler, a grater and a pair of tongs."),
        ("a 20 cm chef's knife handles most chopping jobs",
         "a damp cloth under the board stops it from sliding",
         "a cast-iron pan lasts for decades with basic care"),
    ),
    _Question(
        "travel", "How can I find cheaper flights?",
        ("Compare prices across several dates rather than searching for one fixed day.",
         "Book a few weeks ahead for short trips and a few months ahead for long ones.",
         "Look at nearby airports as well as the main one.",
         "Set price alerts so you are told when fares drop."),
        ("flying on a Tuesday is often cheaper than flying on a Friday",
         "a smaller airport an hour away can save a noticeable amount",
         "a flexible-date search shows a whole month of fares at once"),
    ),
    _Question(
        "travel", "How do I prepare for a trip to a country where I do not speak the language?",
        ("Learn a handful of polite phrases such as hello, please and thank you.",
         "Download an offline map and a translation app before you leave.",
         "Write your hotel address in the local script to show taxi drivers.",
         "Carry some local cash for places that do not take cards."),
        ("a translation app can read a printed menu through the camera",
         "a saved screenshot of the hotel address works without mobile data",
         "pointing at pictures on a menu works almost everywhere"),
    ),
    _Question(
        "travel", "How do I choose a good place to stay on holiday?",
        ("Decide which area you want to be in before comparing individual places.",
         "Read recent reviews, paying attention to comments about noise and cleanliness.",
         "Check the cancellation policy before you pay.",
         "Compare the total price including taxes and cleaning fees."),
        ("a hotel near a metro station saves time and taxi fares",
         "an apartment with a kitchen cuts the cost of eating out",
         "a guesthouse run by locals often comes with good tips about the area"),
    ),
    _Question(
        "coding", "How do I find a bug in a program that gives the wrong result?",
        ("Reproduce the problem reliably with the smallest input you can find.",
         "Print or inspect the values of key variables at each step.",
         "Check your assumptions one by one instead of guessing.",
         "Use a debugger to pause the program and step through it line by line."),
        ("a loop that runs one time too many because of a wrong boundary",
         "a variable that is reset inside a loop instead of before it",
         "a string of digits compared with a number"),
    ),
    _Question(
        "coding", "How should I start using Git for my projects?",
        ("Create a repository in your project folder with git init.",
         "Commit small, related changes together with a clear message.",
         "Create a branch for each new feature or fix.",
         "Push your repository to a hosting service so it is backed up."),
        ("a commit message such as Fix rounding in invoice totals",
         "a branch called add-login-page for a new feature",
         "a .gitignore file that leaves out build folders"),
    ),
    _Question(
        "coding", "How can I make a slow script run faster?",
        ("Measure first with a profiler to find where the time actually goes.",
         "Move repeated work out of loops.",
         "Choose a suitable data structure, such as a set for fast membership checks.",
         "Cache results that are expensive to compute and needed more than once."),
        ("replacing a list lookup inside a loop with a set lookup",
         "reading a file once instead of on every iteration",
         "using a vectorised library call instead of a Python loop over numbers"),
    ),
    _Question(
        "fitness", "How should I warm up before a workout?",
        ("Start with five minutes of light cardio to raise your heart rate.",
         "Move through the joints you are about to use with controlled movements.",
         "Do a few lighter sets of your first exercise.",
         "Save long, static stretches for after the session."),
        ("brisk walking or easy cycling for the first few minutes",
         "leg swings and arm circles before a run",
         "a set of squats with an empty bar before lifting heavier"),
    ),
    _Question(
        "fitness", "How can I become more flexible?",
        ("Stretch when your muscles are warm, such as after exercise.",
         "Hold each stretch for about thirty seconds without bouncing.",
         "Stretch most days, since regular practice matters more than long sessions.",
         "Breathe slowly and relax into each position rather than forcing it."),
        ("a hamstring stretch with one leg resting on a low step",
         "a ten-minute yoga routine before bed",
         "a calf stretch against a wall after a run"),
    ),
    _Question(
        "fitness", "How do I stay motivated to exercise regularly?",
        ("Set a small, specific goal that you can reach within a few weeks.",
         "Schedule your workouts at fixed times, like any other appointment.",
         "Choose activities that you actually enjoy.",
         "Track your progress so you can see how far you have come."),
        ("signing up for a local 5K race two months away",
         "meeting a friend for a walk every Saturday morning",
         "ticking off each workout on a calendar by the door"),
    ),
    _Question(
        "money", "How do I make a monthly budget that I can stick to?",
        ("List your income and your fixed bills for the month.",
         "Track your spending for a few weeks to see where the money really goes.",
         "Give every category a limit, including a small amount for fun.",
         "Review the budget at the end of each month and adjust it."),
        ("the 50/30/20 rule splits income between needs, wants and savings",
         "a separate spending account holds the money for groceries and outings",
         "a simple spreadsheet with one row per category"),
    ),
    _Question(
        "money", "How can I pay off credit card debt faster?",
        ("Always pay at least the minimum on every card to avoid penalties.",
         "Put any extra money toward the card with the highest interest rate.",
         "Stop adding new purchases to the cards you are paying off.",
         "Ask your card provider whether they can offer a lower rate."),
        ("paying 100 more than the minimum each month can cut years off the balance",
         "a balance transfer card with a zero percent introductory rate",
         "listing every debt with its rate to decide which to clear first"),
    ),
    _Question(
        "money", "How should I start saving for retirement?",
        ("Start as early as you can, because compound growth needs time.",
         "Join your employer's pension scheme, especially if they match contributions.",
         "Choose low-cost index funds rather than trying to pick individual shares.",
         "Raise your contribution rate whenever you get a pay rise."),
        ("an employer match of 5 percent is extra money on top of your salary",
         "a global index fund spreads your money across thousands of companies",
         "raising your contribution by 1 percent each year is barely noticeable"),
    ),
    _Question(
        "gardening", "How do I start a compost heap?",
        ("Pick a shady, level spot with bare soil underneath.",
         "Mix green material such as vegetable scraps with brown material such as dry leaves.",
         "Keep the heap about as damp as a wrung-out sponge.",
         "Turn the heap every few weeks to let air in and speed things up."),
        ("shredded cardboard balances a bucket of kitchen scraps",
         "grass clippings heat the heap up quickly",
         "a closed bin keeps the heap tidy in a small garden"),
    ),
    _Question(
        "gardening", "How can I grow herbs on a windowsill?",
        ("Choose the sunniest window you have, ideally one facing south.",
         "Use small pots with drainage holes and a light potting mix.",
         "Water when the surface of the soil feels dry.",
         "Pinch off the top leaves regularly so the plants grow bushy."),
        ("basil thrives on a warm, sunny sill in summer",
         "mint grows so strongly that it is best kept in its own pot",
         "chives regrow quickly after you snip them"),
    ),
    _Question(
        "gardening", "How can I attract bees and butterflies to my garden?",
        ("Plant a variety of flowers that bloom from spring to autumn.",
         "Group plants of the same kind together so insects find them easily.",
         "Leave a corner of the garden a little wild.",
         "Provide a shallow dish of water with stones to land on."),
        ("lavender is visited by bees all summer",
         "a patch of unmown grass lets clover and wildflowers bloom",
         "a buddleia bush draws butterflies in late summer"),
    ),
    _Question(
        "home repair", "How do I clear a slow-draining bathroom sink?",
        ("Remove the stopper and pull out any hair caught underneath.",
         "Use a plunger with the overflow hole covered by a wet cloth.",
         "Unscrew and clean the U-shaped trap under the sink.",
         "Run hot water for a minute afterwards to flush the pipe."),
        ("a plastic drain snake with barbs pulls out clumps of hair",
         "a bucket under the trap catches the water when you open it",
         "a mesh drain cover stops hair from building up again"),
    ),
    _Question(
        "home repair", "How can I fix a door that squeaks and sticks?",
        ("Find out whether the noise comes from the hinges or the door rubbing the frame.",
         "Lubricate squeaky hinges, working the door back and forth afterwards.",
         "Tighten any loose hinge screws.",
         "Plane or sand the edge only where the door rubs."),
        ("a few drops of light oil on the hinge pin usually stops squeaking",
         "a longer screw reaches solid wood when the old hole is stripped",
         "rubbing chalk on the edge shows where the door is catching"),
    ),
    _Question(
        "home repair", "How do I replace the sealant around a bath or shower?",
        ("Cut away and scrape out all of the old sealant.",
         "Clean and dry the joint completely before you start.",
         "Apply a steady, even bead of new silicone along the joint.",
         "Leave it to cure for at least a day before using the shower."),
        ("masking tape on both sides of the joint gives a neat line",
         "filling the bath with water first stops the seal from splitting later",
         "a sealant smoothing tool gives a clean, curved finish"),
    ),
    _Question(
        "sleep", "How can I stop waking up in the middle of the night?",
        ("Limit alcohol in the evening, because it disturbs the second half of the night.",
         "Keep the bedroom cool enough that you do not wake up too warm.",
         "Avoid large drinks in the last two hours before bed.",
         "If you lie awake for a long time, get up and do something quiet until you feel "
         "sleepy."),
        ("blackout curtains stop early summer light from waking you",
         "a fan or white-noise machine masks traffic noise",
         "reading in dim light in another room until your eyes feel heavy"),
    ),
    _Question(
        "sleep", "How do I nap without feeling groggy afterwards?",
        ("Keep naps to about twenty minutes.",
         "Nap in the early afternoon rather than in the evening.",
         "Set an alarm so you do not drift into deep sleep.",
         "Get some light and move around as soon as you wake up."),
        ("a short rest after lunch fits the natural afternoon dip",
         "drinking a coffee just before a short nap helps some people wake up alert",
         "lying down in a dim room with an eye mask"),
    ),
    _Question(
        "sleep", "How can I become more of a morning person?",
        ("Move your bedtime earlier by fifteen minutes every few days.",
         "Open the curtains or go outside soon after waking.",
         "Keep the same wake-up time even when you went to bed late.",
         "Plan something you look forward to early in the day."),
        ("placing the alarm across the room so you have to get up",
         "a lamp that brightens gradually before the alarm goes off",
         "a favourite breakfast waiting as a reason to get up"),
    ),
    _Question(
        "studying", "How can I take better notes in lectures?",
        ("Read the slides or chapter before the lecture.",
         "Write down key ideas in your own words instead of copying everything.",
         "Leave space to add questions and links between ideas.",
         "Review and tidy your notes within a day of the lecture."),
        ("the Cornell method divides the page into notes, cues and a summary",
         "a quick diagram linking causes and effects",
         "a star in the margin next to anything the lecturer repeats"),
    ),
    _Question(
        "studying", "How do I stop putting off my assignments?",
        ("Break each assignment into small steps with their own deadlines.",
         "Start with a task small enough to finish in a few minutes.",
         "Remove distractions such as your phone while you work.",
         "Decide in advance exactly when and where you will work."),
        ("writing only the first paragraph of an essay today",
         "leaving your phone in another room for an hour",
         "booking a library desk for two hours every Tuesday"),
    ),
    _Question(
        "studying", "How should I write a good essay?",
        ("Make sure you understand exactly what the question is asking.",
         "Plan your main argument and the points that support it before writing.",
         "Start each paragraph with a clear statement of its point.",
         "Leave time to edit, reading the draft aloud to catch errors."),
        ("a one-line thesis written at the top of your plan",
         "a quotation from a source followed by your own explanation",
         "cutting a paragraph that does not answer the question"),
    ),
    _Question(
        "photography", "How do I take sharp photos of pets and children who will not keep still?",
        ("Use a fast shutter speed, since movement causes most blur.",
         "Switch to burst mode and take several shots in a row.",
         "Get down to their eye level.",
         "Shoot in good light so the camera does not need slow settings."),
        ("a shutter speed of 1/500 second freezes a running dog",
         "a squeaky toy held above the lens draws their eyes to the camera",
         "photos taken outdoors on a bright, overcast day"),
    ),
    _Question(
        "photography", "How can I take better portraits of my friends?",
        ("Place your subject in soft, even light, such as open shade.",
         "Focus on the eyes.",
         "Choose a simple background that does not distract.",
         "Chat with your subject so their expression stays relaxed."),
        ("a portrait mode that blurs the background behind a face",
         "standing a few steps back and zooming in for a more flattering look",
         "a white wall that bounces light back onto the face"),
    ),
    _Question(
        "photography", "How should I back up and organise my photos?",
        ("Keep at least two copies of every photo in different places.",
         "Copy new photos off your camera or phone regularly.",
         "Organise folders by year and then by event.",
         "Delete blurry shots and near duplicates soon after copying."),
        ("an external drive plus a cloud backup service",
         "a folder named 2024-07 Lake District holiday",
         "marking your favourites with a star so they are easy to find later"),
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
    """The questions of one split ("train" or "test"); the two splits share no question.

    Train has four questions per topic (the first of each `_QUESTIONS` pair, then
    `_EXTRA_TRAIN_QUESTIONS`); test has one per topic (the second of each pair).
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    if split == "test":
        return tuple(pair[1] for pair in _QUESTIONS)
    return tuple(pair[0] for pair in _QUESTIONS) + _EXTRA_TRAIN_QUESTIONS


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
