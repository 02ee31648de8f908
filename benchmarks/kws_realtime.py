"""Streaming keyword detection: compute per second of audio, and the delay from a word's end to its report.

A stream of running speech is built from the held-out speakers' clips of the test words: words
with pauses of 0.2-0.8 s, a fifth of them the enrolled keywords, in pink noise at ``--snr`` dB.
Five test words are enrolled from 3 clips each, of the other half of the held-out speakers. The stream is fed to
``KeywordSpotter.stream()`` in ``--chunk_ms`` pieces, as a microphone would deliver it, through
the Keras encoder and its LiteRT float32 and int8 exports. The figures:

- the real-time factor: seconds of compute per second of audio (below 1: it keeps up);
- the delay from the end of a spoken keyword to the return of the ``feed`` call that reports it,
  in stream time (median and 90th percentile), for the keywords found (the right name within
  0.5 s of the word's start);
- found keywords and false alarms, at the spotter's threshold (``--threshold``).

    python benchmarks/kws_realtime.py --data_dir ../shared/data/spoken_keywords --model runs/kws_protores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

RATE = 16_000


def build_stream(test, keywords: list[str], enrolled_speakers: set, seconds: float, snr_db: float, noise, seed: int):
    """``(waveform, said)``: running speech of the speakers not enrolled from, and the keywords said
    in it as ``(keyword, start s, end s)``."""
    from tfresnet.kws.calibrate import trimmed  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    others = [i for i in range(len(test.labels)) if test.speakers[i] not in enrolled_speakers]
    is_keyword = np.array([test.keywords[test.labels[i]] in keywords for i in others])
    pieces, said, t = [], [], 0.0
    while t < seconds:
        pool = np.array(others)[is_keyword if rng.random() < 0.2 else ~is_keyword]
        i = int(rng.choice(pool))
        word = trimmed(test.waveforms[i])
        pause = np.zeros(int(rng.uniform(0.2, 0.8) * RATE), np.float32)
        pieces += [pause, word]
        start = t + len(pause) / RATE
        if test.keywords[test.labels[i]] in keywords:
            said.append((test.keywords[test.labels[i]], start, start + len(word) / RATE))
        t = start + len(word) / RATE
    speech = np.concatenate(pieces)
    reps = int(np.ceil(len(speech) / len(noise)))
    background = np.tile(noise, reps)[:len(speech)]
    level = np.sqrt(np.mean(np.concatenate([trimmed(test.waveforms[i]) for i in others[:50]]) ** 2))
    background = background / background.std() * level / 10 ** (snr_db / 20)
    return np.clip(speech + background, -1, 1).astype(np.float32), said


def run_stream(spotter, wave: np.ndarray, said, chunk: int, hop: float):
    """Feeds ``wave`` in ``chunk`` samples; returns (compute seconds, [(detection, reported at s)])."""
    detector = spotter.stream(hop=hop)
    reported, compute = [], 0.0
    for lo in range(0, len(wave), chunk):
        tic = time.perf_counter()
        found = detector.feed(wave[lo:lo + chunk])
        compute += time.perf_counter() - tic
        reported += [(d, (lo + len(wave[lo:lo + chunk])) / RATE) for d in found]
    tic = time.perf_counter()
    reported += [(d, len(wave) / RATE) for d in detector.finish()]
    return compute + time.perf_counter() - tic, reported


def score(reported, said) -> dict:
    """Found keywords (right name within 0.5 s of the start), false alarms, delays from the word's end."""
    hit, delays, false_alarms = set(), [], 0
    for d, at in reported:
        match = next((k for k, (name, start, _) in enumerate(said)
                      if k not in hit and name == d.keyword and abs(d.start - start) <= 0.5), None)
        if match is None:
            false_alarms += 1
        else:
            hit.add(match)
            delays.append(at - said[match][2])
    return {"said": len(said), "found": len(hit), "false_alarms": false_alarms,
            "delay_median_s": float(np.median(delays)) if delays else None,
            "delay_p90_s": float(np.percentile(delays, 90)) if delays else None}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="the spoken keywords (Speech Commands layout)")
    parser.add_argument("--model", required=True, help="a few-shot run folder (model.keras)")
    parser.add_argument("--seconds", type=float, default=300.0, help="length of the stream")
    parser.add_argument("--chunk_ms", type=float, default=100.0)
    parser.add_argument("--hop", type=float, default=0.05)
    parser.add_argument("--snr", type=float, default=20.0, help="speech to pink noise, dB")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--encoders", default="keras,float32,int8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    from tfresnet.kws import audio, spotting  # noqa: PLC0415

    clips = audio.load_keyword_folder(args.data_dir)
    test = audio.keyword_split(clips, "test")
    keywords = sorted({test.keywords[label] for label in test.labels})[:5]  # of the 10 test words
    speakers = sorted(set(test.speakers))
    enrolled_from = set(speakers[:len(speakers) // 2])  # the other half speaks the stream
    wave, said = build_stream(test, keywords, enrolled_from, args.seconds, args.snr, clips.noise[1], args.seed)
    encoder = spotting.load_encoder(args.model)
    encoders = {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.encoders.split(","):
            if name == "keras":
                encoders[name] = encoder
                continue
            path = os.path.join(work, f"{name}.tflite")
            rep = None
            if name == "int8":
                rep = spotting.representative_features(args.data_dir, spotting.encoder_input_shape(encoder)[1])
            spotting.export_tflite(encoder, path, rep)
            encoders[name] = spotting.LiteEncoder(path)
        results = {"stream_seconds": len(wave) / RATE, "keywords": keywords, "chunk_ms": args.chunk_ms,
                   "snr_db": args.snr, "threshold": args.threshold, "encoders": {}}
        for name, enc in encoders.items():
            spotter = spotting.KeywordSpotter(enc, threshold=args.threshold)
            for word in keywords:
                label = test.keywords.index(word)
                pick = (test.labels == label) & np.isin(test.speakers, sorted(enrolled_from))
                spotter.enroll(word, list(test.waveforms[pick][:3]))
            spotter.scores(np.zeros((4, spotter.samples), np.float32))  # traces the compiled scorer before the timing
            compute, reported = run_stream(spotter, wave, said, int(args.chunk_ms * RATE / 1000), args.hop)
            row = {"real_time_factor": compute / (len(wave) / RATE), **score(reported, said)}
            results["encoders"][name] = row
            delay = (f"delay from the word's end: median {row['delay_median_s']:.2f} s, 90th percentile "
                     f"{row['delay_p90_s']:.2f} s" if row["delay_median_s"] is not None else "nothing found")
            print(f"{name}: real-time factor {row['real_time_factor']:.3f}; found {row['found']}/{row['said']} "
                  f"keywords, {row['false_alarms']} false alarms in {len(wave) / RATE:.0f} s; {delay}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
