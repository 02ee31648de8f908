"""More training words for the few-shot keyword encoder, in the training speakers' own voices.

The spoken keywords (``../shared/data/spoken_keywords``) hold 35 words; the encoder trains on 20
of them, and an encoder that has heard 20 words learns what tells those 20 apart. This renders
687 everyday English words (``COMMON_WORDS``; or ``--words`` drawn from a ``--dictionary``) with
the espeak-ng voice of every *training* speaker in ``SPEAKERS.tsv`` (accent, variant, pitch,
speed, gain: the generator of the data,
``make_spoken_keywords.py`` beside it, renders them), never a held-out speaker's
(``tfresnet.kws.audio.held_out_speakers``), and never a Speech Commands word or a word that spells a
validation or test word inside it ("going", "nobody"). Train on them with
``--extra_words_dir=OUT`` (``flags/kws_protores_words.cfg``); BENCHMARKS.md has the figures.

Needs ``espeak-ng`` and ``sox`` (Debian: ``apt-get install espeak-ng sox``; a dictionary: ``wamerican``).
Deterministic: each word's clips are a function of the word alone, and files already written are
kept, so an interrupted run picks up where it stopped.

    python benchmarks/kws_words.py --data_dir ../shared/data/spoken_keywords --out runs/kws_words
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import importlib.util
import os
import pathlib
import random
import re
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor

from tfresnet.kws import audio

# The 35 Speech Commands words: the few-shot split's three lists.
SPEECH_COMMANDS_WORDS = audio.TRAIN_WORDS + audio.VALIDATION_WORDS + audio.TEST_WORDS


# About 700 everyday English words (of the first thousand words taught to learners); the ones that
# are Speech Commands words or spell a validation or test word inside them are dropped by
# usable_words, leaving 687.
COMMON_WORDS = tuple("""
    about above across act add after again against age air all almost alone along also always am among
    and animal answer any apple april area arm army around art ask away baby back bad bag ball bank base
    basket bath beach bear beat beautiful because become been before begin behind believe bell below
    belt best better between big bill black blue board boat body bone book born both bottle box boy
    bread break bridge bright bring brother brown build bus busy but buy cake call came camera can
    candle capital car card care carry case castle catch cause center chair chance change cheap check
    cheese chicken child choose church circle city class clean clear climb clock close cloud coast coat
    coffee cold color come common company cook cool copy corner cost could count country course cover
    cow cream cross crowd cup cut daily dance danger dark daughter day dead deal dear deep desk die
    dinner direct doctor does dollar door double dream dress drink drive drop dry during duty each ear
    early earth east easy eat edge egg either else empty end enemy enjoy enough enter even evening event
    ever every exact example except expect eye face fact fair fall family famous far farm fast father
    fear feel few field fight fill film final find fine finger finish fire first fish fit flat floor
    flower fly food foot force forest forget form free fresh friday friend from front fruit full fun
    funny future game garden gate girl give glass gold grass gray great green ground group grow guess
    gun hair half hall hand hang hard hat have head health hear heart heat heavy hello help her here
    hill him history hit hold hole holiday hope horse hospital hot hotel hour how huge human hundred
    hunt hurry husband ice idea inch into iron island itself jacket january job join joke judge juice
    jump just keep key kick kill kind king kitchen knee knife lady lake land language large last late
    laugh law lay lead leaf least leave leg lemon less letter level library lie life light like line
    lion lip list listen little live long look lose lot loud love low lunch machine made mail main make
    man many map market match may meal mean meat meet member middle might mile milk mind minute miss
    mistake moment monday money month moon more morning most mother mountain mouth move much music must
    name narrow nation nature near neck need never new news next nice night noise noon number nurse
    ocean office oil old only open orange order other out over page paint pair paper parent park part
    party pass past path pay peace pen pencil people pepper person piano pick picture piece pink place
    plan plant plate play please pocket point police pool poor potato power present pretty price print
    problem pull purple push put queen question quick quiet rabbit race radio rain read ready real
    reason red remember rest rice rich ride ring river road rock roof room rope rose round rule run sad
    safe salt same sand saturday say school science sea season seat second see sell send sentence serve
    shape share she sheep shirt shoe shop short shoulder show shut sick side sign silver simple since
    sing sister sit size skin sky sleep slow small smell smile smoke snake soft soldier some son song
    soon sorry sound soup south space speak special spend spring square star start station stay step
    still stone story street strong student study sugar summer sun sunday supper sure sweet swim table
    tail take talk tall taste tea teach team teeth tell ten test than thank that their then there thick
    thin thing think third this thousand through thursday ticket tiger time tiny today together tomato
    tomorrow tonight too tooth top touch town toy train travel true try tuesday turn twelve twenty type
    uncle under until use usual valley value very village voice wait walk wall want warm wash watch
    water way wear weather wednesday week welcome well west wet what wheel when where which while white
    who why wide wife wild will win wind window winter wish with woman wonder wood word work world worry
    write wrong year yellow young
""".split())


def usable_words(words, forbidden=SPEECH_COMMANDS_WORDS, held=audio.VALIDATION_WORDS + audio.TEST_WORDS) -> list[str]:
    """``words`` sorted and without repeats, ``forbidden`` words (the 35 Speech Commands words) and
    any that spell a ``held`` word inside them (its sounds would be heard in training: "going")."""
    return sorted(w for w in set(words) if w not in forbidden and not any(h in w for h in held))


def dictionary_words(lines) -> list[str]:
    """The plain lower-case words of 3-9 letters of a dictionary file's lines, ``usable_words``."""
    return usable_words(w for w in (line.strip() for line in lines) if re.fullmatch(r"[a-z]{3,9}", w))


def training_voices(speakers_tsv: str | pathlib.Path, held_out: bool = False) -> list[dict[str, str]]:
    """The rows of ``SPEAKERS.tsv`` of the training speakers: those ``held_out_speakers`` leaves in
    (with ``held_out``, the others: the voices only test data may be rendered in)."""
    with open(speakers_tsv, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "speaker" not in rows[0]:
        raise ValueError(f"{speakers_tsv}: expected a tab-separated table with a 'speaker' column")
    held = audio.held_out_speakers(r["speaker"] for r in rows)
    return [r for r in rows if (r["speaker"] in held) == held_out]


@functools.lru_cache(maxsize=None)  # once per worker process, not once per word
def _load_maker(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location("make_spoken_keywords", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render_word(job) -> str:
    maker_path, out, word, voices = job
    maker = _load_maker(maker_path)
    # Each word's own generator: its clips do not depend on which other words are rendered.
    rng = random.Random(int(hashlib.sha1(word.encode()).hexdigest(), 16))
    for v in voices:
        path = os.path.join(out, word, f"{v['speaker']}_nohash_0.wav")
        clip = maker.render(word, v["accent"], v["variant"], int(v["pitch"]), int(v["speed"]), float(v["gain_db"]),
                            rng)  # drawn even when the file exists, so a resumed run writes the same clips
        if not os.path.exists(path):
            maker.write(path + ".tmp", clip)
            os.replace(path + ".tmp", path)
    return word


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="../shared/data/spoken_keywords", help="has SPEAKERS.tsv")
    parser.add_argument("--out", required=True, help="the folder to write: OUT/<word>/<speaker>_nohash_0.wav")
    parser.add_argument("--dictionary", default=None, help="draw the words from this word list (one per line, "
                        "e.g. /usr/share/dict/words) instead of the 687 common words built in")
    parser.add_argument("--words", type=int, default=2000, help="with --dictionary: how many to draw")
    parser.add_argument("--maker", default=None, help="default: make_spoken_keywords.py beside --data_dir")
    parser.add_argument("--seed", type=int, default=0, help="with --dictionary: which words")
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    data_dir = pathlib.Path(args.data_dir)
    maker = pathlib.Path(args.maker) if args.maker else data_dir.parent / "make_spoken_keywords.py"
    for tool in ("espeak-ng", "sox"):
        if not shutil.which(tool):
            sys.exit(f"error: {tool} not found (Debian: apt-get install espeak-ng sox)")
    for path in (maker, data_dir / "SPEAKERS.tsv", *([pathlib.Path(args.dictionary)] if args.dictionary else [])):
        if not path.is_file():
            sys.exit(f"error: {path} not found")
    voices = training_voices(data_dir / "SPEAKERS.tsv")
    if args.dictionary:
        with open(args.dictionary, encoding="utf-8", errors="replace") as f:
            candidates = dictionary_words(f)
        if len(candidates) < args.words:
            sys.exit(f"error: {args.dictionary} has {len(candidates)} usable words, fewer than --words {args.words}")
        words = sorted(random.Random(args.seed).sample(candidates, args.words))
    else:
        words = usable_words(COMMON_WORDS)
    print(f"{len(words)} words x {len(voices)} training speakers -> {args.out}", flush=True)
    jobs = [(maker, args.out, w, voices) for w in words]
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        for done, _ in enumerate(pool.map(_render_word, jobs, chunksize=8), 1):
            if done % 250 == 0 or done == len(words):
                print(f"{done} / {len(words)} words", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
