"""Keyword spotting in hours of running speech: keywords found at 1 and 0.1 false alarms per hour.

The stream (``--hours`` per condition, 5 by default, so that one false alarm an hour is counted,
not extrapolated) is speech the encoder never heard: ``OTHER_WORDS`` (below; more than half of
them in no training word list) and the 10 test words, rendered by espeak-ng in the voices of the
held-out speakers of ``SPEAKERS.tsv`` as ``benchmarks/kws_words.py`` renders the training
speakers' (each rendering with its voice's pitch, speed and loudness varied a little, as a
person never says a word the same way twice), spoken at a natural pace (``calibrate.Pace``:
about 55 words a minute), about one word in eight a test word, at known times. The held-out
speakers are split in two: half speak the stream, the other half's clips of the shared data
are the enrollment recordings (1, 3 or 5 of them, each by another speaker: the user's
recordings are not the voice in the stream). The speech is mixed with the background noise of
the data (white, pink and brown in turn) at each ``--snr``.

Five test words are enrolled at a time (both halves of the 10, ``--draws`` enrollment draws
each); the other five, spoken in the same stream, are non-keywords like every other word. A
keyword is found when its name is detected within 0.5 s of its start; every other detection is
a false alarm. Each stream is embedded once (``stream.WindowRecorder``; cached in ``--out``) and
the detector's decisions are replayed (``stream.replay``, the same decisions) for every
enrollment and threshold. Reported per condition and enrollment size: keywords found at the
lowest single cosine threshold that gives at most 1 and at most 0.1 false alarms per hour, the
same with per-keyword thresholds from the encoder's cohort (``tfresnet-kws calibrate``), and the
false-alarm rates measured when 1 and 0.1 an hour are asked for (``--false_alarms_per_hour``).
The detection-error curves go to ``OUT/det.png``, the figures to ``OUT/results.json``.

    python benchmarks/kws_stream.py --data_dir ../shared/data/spoken_keywords --model runs/kws_protores_words \\
        --out runs/kws_stream

Needs ``espeak-ng`` and ``sox``. Five hours per condition take about 10-15 minutes each on 2 CPU
cores (the embedding; replays are seconds).
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import pathlib
import random
import sys
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from benchmarks import kws_words  # noqa: E402
from tfresnet.kws import audio, calibrate, spotting, stream  # noqa: E402

RATE = audio.SAMPLE_RATE
# Words of the stream besides the test words: 200 everyday words in no training list (neither
# the Speech Commands words nor kws_words.COMMON_WORDS) and 100 of COMMON_WORDS (training words,
# but not in these voices). None spells a test word inside it ("going", "nobody"): a detection
# there would be half right.
NEW_WORDS = tuple("""
    able account actor address advice afraid agree ahead alarm alive allow amount angry ankle
    anyone apart appear arrive artist asleep attack aunt autumn avenue avoid awake bacon badge
    bake balance banana band barber battle beard bedroom beef begun belong bench berry bicycle
    biscuit blanket blind block blood blouse boil bold border borrow bottom bowl brain branch
    brave breakfast breath brick bride brief broad brush bucket budget bullet bunch burn butter
    button cabbage cable calm camp canal captain carpet carrot cattle ceiling cent chain chalk
    channel chapter charge cheek chest chimney chin chip choice chop circus claim clay clerk
    cliff clothes coal coin collar collect comb comfort cotton cough cousin crack crash crew
    crop crown cry curtain cushion custom damage damp debt decide degree delay dentist depth
    desert dessert diamond diary dictionary dirt dish distance ditch dive divide drawer dress
    drum duck dust eagle effort elbow engine envelope escape essay evil exam excuse exit fabric
    fancy feather fence fever fifty flag flame flour fog fold folk fork fountain fox freeze
    frog frost gallery garage gas gentle ghost giant gift glove glue goat grain grape gravy
    guard guest guitar habit hammer handle harbor harvest hawk heaven hedge helmet hero honey
    hook hunger hut insect invite jam jar jelly jewel journey jungle kettle kingdom kiss kite
    ladder lamp lawn lazy leather lesson lid lizard loaf lock lunar magic magnet maple marble
""".split())
OLD_WORDS = tuple(kws_words.usable_words(kws_words.COMMON_WORDS)[::6][:100])


def other_words() -> list[str]:
    """The stream's non-keyword words: ``NEW_WORDS`` and ``OLD_WORDS``, without any that spells a test word."""
    words = sorted({w for w in NEW_WORDS + OLD_WORDS if not any(t in w for t in audio.TEST_WORDS)})
    trained = set(kws_words.COMMON_WORDS) | set(kws_words.SPEECH_COMMANDS_WORDS)
    assert sum(w not in trained for w in words) > len(words) / 2, "most stream words must be new to the encoder"
    return words


def _render(job) -> tuple[str, str, int, np.ndarray]:
    """One word by one voice, its ``take``-th time: the voice's pitch, speed and gain varied a little."""
    maker_path, word, voice, take = job
    maker = kws_words._load_maker(maker_path)
    rng = random.Random(int(hashlib.sha1(f"{word}/{voice['speaker']}/{take}".encode()).hexdigest(), 16))
    pitch = min(99, max(0, int(voice["pitch"]) + rng.randint(-8, 8)))
    speed = int(int(voice["speed"]) * rng.uniform(0.9, 1.1))
    gain = float(voice["gain_db"]) + rng.uniform(-2, 2)
    clip = maker.render(word, voice["accent"], voice["variant"], pitch, speed, gain, rng)
    return word, voice["speaker"], take, calibrate.trimmed(clip.astype(np.float32) / 32768)


def render_all(maker, words, voices, takes, cache: pathlib.Path, jobs: int) -> dict:
    """``{(word, speaker): [waveform of each take]}``, rendered once and kept in ``cache`` (an .npz)."""
    if cache.is_file():
        with np.load(cache) as f:
            out = {}
            for key in f.files:
                word, speaker, _ = key.split("/")
                out.setdefault((word, speaker), []).append(f[key])
            if len(out) == len(words) * len(voices):
                return out
    work = [(maker, w, v, t) for w in words for v in voices for t in range(takes)]
    with ProcessPoolExecutor(max(1, jobs)) as pool:
        done = list(pool.map(_render, work, chunksize=16))
    np.savez(cache, **{f"{w}/{s}/{t}": clip for w, s, t, clip in done})
    out = {}
    for w, s, _, clip in done:
        out.setdefault((w, s), []).append(clip)
    return out


def build_stream(rendered, words, speakers, hours: float, seed: int, keyword_share: float = 0.125):
    """The stream's speech as ``(start sample, phrase)`` pieces (``calibrate.running_speech``), and
    the test words said in it as ``[(word, start s)]``, filled in as the pieces are drawn."""
    test = [w for w in audio.TEST_WORDS if (w, speakers[0]) in rendered]
    picked, said = [], []

    def pick(rng):
        keyword = rng.random() < keyword_share
        word = test[int(rng.integers(len(test)))] if keyword else words[int(rng.integers(len(words)))]
        takes = rendered[(word, speakers[int(rng.integers(len(speakers)))])]
        picked.append(word if keyword else None)
        return takes[int(rng.integers(len(takes)))]

    def pieces():
        for start, phrase, spoken in calibrate.running_speech(pick, hours * 3600, np.random.default_rng(seed)):
            said.extend((word, lo / RATE) for (lo, _), word in zip(spoken, picked[-len(spoken):]) if word)
            yield start, phrase

    return pieces(), said


def embed_condition(spotter, rendered, words, speakers, noise, level, snr, hours, seed, hop, cache) -> tuple:
    """The recorded windows of one condition's stream (cached) and the test words said in it."""
    if cache.is_file():
        saved = calibrate.Cohort.load(cache)
        said = json.loads(cache.with_suffix(".json").read_text())
        return saved.windows, [tuple(s) for s in said]
    speech, said = build_stream(rendered, words, speakers, hours, seed)
    rms = level / 10 ** (snr / 20)
    windows = calibrate.record_windows(spotter.embed, spotter.samples,
                                       (calibrate.with_noise(phrase, start, noise, rms)
                                        for start, phrase in speech), hop)
    calibrate.Cohort(windows, hop).save(cache)
    cache.with_suffix(".json").write_text(json.dumps(said))
    return windows, said


def score(detections, said, keywords) -> tuple[int, int, int]:
    """(keywords said, found, false alarms): found = the right name within 0.5 s of the start, each
    keyword said found once."""
    targets = {k: sorted(t for w, t in said if w == k) for k in keywords}
    used = {k: [False] * len(v) for k, v in targets.items()}
    found = false = 0
    for d in detections:
        starts = targets.get(d.keyword, [])
        i = bisect.bisect_left(starts, d.start - 0.5)
        while i < len(starts) and starts[i] <= d.start + 0.5 and used[d.keyword][i]:
            i += 1
        if i < len(starts) and starts[i] <= d.start + 0.5:
            used[d.keyword][i] = True
            found += 1
        else:
            false += 1
    return sum(len(v) for v in targets.values()), found, false


def operating_points(windows, prototypes, keywords, said, thresholds_of,
                     smooth_windows: int = stream.SMOOTH_WINDOWS) -> list[tuple[float, float, float]]:
    """``[(knob, recall, false alarms per hour)]`` over a range of the knob ``thresholds_of`` turns into
    thresholds, the windows scored as a detector that smooths over ``smooth_windows`` scores them."""
    hours, scores = windows.seconds / 3600, windows.embeddings @ prototypes.T.astype(np.float32)
    scores = stream.smoothed_scores(windows, scores, smooth_windows)  # once, not at every knob
    points = []
    for knob, thresholds in thresholds_of:
        found_ = stream.replay(windows, prototypes, thresholds, keywords, scores=scores, smooth_windows=0)
        n, found, false = score(found_, said, keywords)
        points.append((knob, found / max(n, 1), false / hours))
        if false / hours > 500:  # the knobs run from strict to loose: the rest is noise
            break
    return points


def recall_at(points, rate: float) -> float:
    """The best recall among the operating points with at most ``rate`` false alarms per hour."""
    ok = [r for _, r, fa in points if fa <= rate]
    return max(ok) if ok else 0.0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="the spoken keywords (SPEAKERS.tsv, test words)")
    parser.add_argument("--model", required=True, help="a few-shot run folder (model.keras; cohort.npz if calibrated)")
    parser.add_argument("--out", required=True, help="renders, embedded streams, results.json and det.png go here")
    parser.add_argument("--hours", type=float, default=5.0, help="hours of running speech per condition")
    parser.add_argument("--snr", default="20,10,5", help="signal-to-noise ratios (dB), one condition each")
    parser.add_argument("--shots", default="1,3,5", help="enrollment sizes")
    parser.add_argument("--draws", type=int, default=3, help="enrollment draws per half of the test words")
    parser.add_argument("--takes", type=int, default=3, help="renderings of each word by each stream voice")
    parser.add_argument("--hop", type=float, default=0.05)
    parser.add_argument("--smooth_windows", type=int, default=stream.SMOOTH_WINDOWS,
                        help="the detector's score smoothing (windows either side; 0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--words", type=int, default=0, help="speak only the first N of the other words (0: all)")
    parser.add_argument("--cohort", default=None, help="the encoder's cohort (default: the run's cohort.npz, if any)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    data_dir, out = pathlib.Path(args.data_dir), pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    voices = sorted(kws_words.training_voices(data_dir / "SPEAKERS.tsv", held_out=True), key=lambda r: r["speaker"])
    enrollers = {v["speaker"] for v in voices[::2]}  # half enroll (their shared clips), half speak the stream
    stream_voices = [v for v in voices if v["speaker"] not in enrollers]
    words = other_words()[:args.words or None]
    maker = data_dir.parent / "make_spoken_keywords.py"
    rendered = render_all(maker, words + list(audio.TEST_WORDS), stream_voices, args.takes,
                          out / f"renders_{len(words)}w_{args.takes}.npz", args.jobs)
    speakers = [v["speaker"] for v in stream_voices]
    clips = audio.keyword_split(audio.load_keyword_folder(data_dir), "test")
    noise = np.concatenate(clips.noise) if clips.noise else np.random.default_rng(0).standard_normal(RATE * 60)
    level = calibrate.speech_level([c for takes in rendered.values() for c in takes])
    spotter = spotting.KeywordSpotter.load(args.model, cohort=args.cohort, smooth_windows=args.smooth_windows)
    model_file = pathlib.Path(args.model) / "model.keras" if os.path.isdir(args.model) else pathlib.Path(args.model)
    # The embedded streams are the encoder's: a cache of another encoder (or stream) is not read.
    key = hashlib.sha1(model_file.read_bytes()).hexdigest()[:8] + f"_{len(words)}w_{args.takes}t_{args.seed}s"
    results = {"hours": args.hours, "words": len(words), "smooth_windows": args.smooth_windows,
               "stream_speakers": speakers,
               "enrollment_speakers": sorted(enrollers), "conditions": {}}
    curves = {}
    for snr in [float(s) for s in args.snr.split(",")]:
        cache = out / f"stream_{key}_{args.hours:g}h_{snr:g}db.npz"
        windows, said = embed_condition(spotter, rendered, words, speakers, noise.astype(np.float32), level, snr,
                                        args.hours, args.seed, args.hop, cache)
        condition = {"keywords_said": len(said), "windows": len(windows.starts)}
        for shots in [int(s) for s in args.shots.split(",")]:
            rows = evaluate(spotter, windows, said, clips, enrollers, shots, args.draws, args.seed)
            condition[f"{shots}-clip"] = rows["summary"]
            curves[(snr, shots)] = rows["uniform"]
            print(f"{snr:g} dB, {shots}-clip: " + ", ".join(f"{k} {v:.3f}" for k, v in rows["summary"].items()),
                  flush=True)
        results["conditions"][f"{snr:g} dB"] = condition
    draw_curves(curves, out / "det.png")
    for path in [out / "results.json"] + ([pathlib.Path(args.json)] if args.json else []):
        path.write_text(json.dumps(results, indent=2))
    return results


def evaluate(spotter, windows, said, clips, enrollers, shots: int, draws: int, seed: int) -> dict:
    """The operating points of every enrollment draw, pooled: single thresholds and, with a cohort,
    per-keyword thresholds for asked false-alarm rates."""
    rng, smooth = np.random.default_rng(seed + shots), spotter.smooth_windows
    uniform, calibrated, asked = [], [], {1.0: [], 0.1: []}
    halves = (audio.TEST_WORDS[:5], audio.TEST_WORDS[5:])
    grid = np.round(np.arange(1.0, 0.5, -0.0025), 4)  # from the top down, until false alarms pass 500 an hour
    rates = np.exp(np.linspace(np.log(0.01), np.log(1000), 40))
    for keywords in halves:
        for _ in range(draws):
            protos = []
            for word in keywords:
                pick = np.flatnonzero((np.array(clips.keywords)[clips.labels] == word)
                                      & np.isin(clips.speakers, sorted(enrollers)))
                chosen = rng.choice(pick, shots, replace=False)
                protos.append(spotting.prototype(spotter.embed(list(clips.waveforms[chosen]))))
            protos = np.stack(protos)
            uniform.append(operating_points(windows, protos, keywords, said, ((t, t) for t in grid), smooth))
            if spotter.cohort is not None:
                calibrated.append(operating_points(windows, protos, keywords, said,
                                                   ((r, spotter.cohort.thresholds(list(protos), r, smooth))
                                                    for r in rates), smooth))
                for r in asked:
                    asked[r] += operating_points(windows, protos, keywords, said,
                                                 [(r, spotter.cohort.thresholds(list(protos), r, smooth))], smooth)
    pooled = pool(uniform)
    summary = {"recall_at_1_per_hour": recall_at(pooled, 1.0), "recall_at_0.1_per_hour": recall_at(pooled, 0.1)}
    if calibrated:
        pooled_cal = pool(calibrated)
        summary.update({"calibrated_recall_at_1_per_hour": recall_at(pooled_cal, 1.0),
                        "calibrated_recall_at_0.1_per_hour": recall_at(pooled_cal, 0.1)})
        for r, points in asked.items():
            summary[f"asked_{r:g}_per_hour_measured"] = float(np.mean([fa for _, _, fa in points]))
            summary[f"asked_{r:g}_per_hour_recall"] = float(np.mean([rec for _, rec, _ in points]))
    return {"summary": summary, "uniform": pooled}


def pool(draws) -> list[tuple[float, float, float]]:
    """The draws' operating points averaged knob by knob (the knobs every draw reached)."""
    n = min(len(d) for d in draws)
    return [(draws[0][i][0], float(np.mean([d[i][1] for d in draws])), float(np.mean([d[i][2] for d in draws])))
            for i in range(n)]


def draw_curves(curves, path) -> None:
    """Detection-error curves: missed keywords against false alarms per hour, one per condition and enrollment."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 5))
    colours = {snr: f"C{i}" for i, snr in enumerate(sorted({snr for snr, _ in curves}, reverse=True))}
    styles = {shots: style for shots, style in zip(sorted({shots for _, shots in curves}), ("--", "-", ":", "-."))}
    for (snr, shots), points in sorted(curves.items()):
        fa = np.array([p[2] for p in points])
        miss = np.maximum(1 - np.array([p[1] for p in points]), 1e-3)  # 0 missed drawn at 0.1%
        keep = fa > 0
        ax.plot(fa[keep], miss[keep] * 100, label=f"{snr:g} dB, {shots}-clip", color=colours[snr],
                linestyle=styles.get(shots, "-"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(0.05, 500)
    ax.set_ylim(0.1, 100)
    ax.axvline(1, color="gray", linestyle=":")
    ax.axvline(0.1, color="gray", linestyle=":")
    ax.set_xlabel("false alarms per hour")
    ax.set_ylabel("keywords missed (%)")
    ax.set_title("Keyword spotting in running speech (held-out speakers, test words)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
