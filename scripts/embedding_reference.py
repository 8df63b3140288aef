#!/usr/bin/env python3
"""Reference all-MiniLM-L6-v2 embeddings, computed the way sentence-transformers computes them,
for the text_embeddings pipeline's tests and the benchmark's Python baseline.

Texts are tokenized with Hugging Face's `tokenizers` package from the model's tokenizer.json
(truncation at 256 tokens, no padding: one text per run, batch 1), run through the model with
onnxruntime (one intra-op and one inter-op thread), mean-pooled over the tokens and
L2-normalised, as sentence-transformers' Pooling(mean) + Normalize modules do.

Usage:
    embedding_reference.py [--model-dir models/all-MiniLM-L6-v2] < texts.jsonl
        reads a JSON list of texts on stdin; prints {"embeddings": [[...]], "token_counts": [...]}
    embedding_reference.py --bench FILE [--seconds S]
        embeds the texts of FILE (one per line) one at a time, in a loop on one thread, and
        prints {"texts": n, "seconds": s, "texts_per_second": r}

Needs numpy, onnxruntime and tokenizers (scripts/setup.sh --test installs them into .venv-test).
"""
import argparse
import json
import sys
import time

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

MAX_TOKENS = 256


class Embedder:
    def __init__(self, model_dir):
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            model_dir + "/model.onnx", providers=["CPUExecutionProvider"], sess_options=opts)
        self.tokenizer = Tokenizer.from_file(model_dir + "/tokenizer.json")
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)

    def embed(self, text):
        enc = self.tokenizer.encode(text)
        ids = np.array([enc.ids], dtype=np.int64)
        mask = np.array([enc.attention_mask], dtype=np.int64)
        types = np.array([enc.type_ids], dtype=np.int64)
        (hidden,) = self.session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norm = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norm)[0], len(enc.ids)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--bench", help="a file of texts, one per line: time a batch-1 loop over them")
    ap.add_argument("--seconds", type=float, default=0.0,
                    help="with --bench: stop after this many seconds (0: all texts once)")
    args = ap.parse_args()
    embedder = Embedder(args.model_dir)
    if args.bench:
        with open(args.bench, encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f if line.strip()]
        embedder.embed(texts[0])  # warm-up
        start = time.perf_counter()
        n = 0
        for text in texts:
            embedder.embed(text)
            n += 1
            if args.seconds and time.perf_counter() - start >= args.seconds:
                break
        seconds = time.perf_counter() - start
        print(json.dumps({"texts": n, "seconds": seconds, "texts_per_second": n / seconds}))
        return 0
    texts = json.load(sys.stdin)
    out = [embedder.embed(t) for t in texts]
    print(json.dumps({
        "embeddings": [[float(x) for x in v] for v, _ in out],
        "token_counts": [n for _, n in out],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
