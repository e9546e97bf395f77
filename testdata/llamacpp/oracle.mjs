// oracle.mjs: loads a GGUF file in real llama.cpp (node-llama-cpp's prebuilt
// CPU binaries, never built from source) and answers one JSON request read
// from stdin with one JSON reply on stdout. Used by adaptq's Go tests
// (internal/llamacpp) as the reference for what llama.cpp makes of our files.
//
//   node oracle.mjs < request.json
//
// node-llama-cpp is imported from $ADAPTQ_NODE_MODULES, else from
// <repo>/.tools/npm/node_modules (installed by `bash scripts/tools.sh llama`).
//
// Request (every part optional except model):
//   {
//     "model": "/path/model.gguf",
//     "contextSize": 256,          // default 512
//     "threads": 1,                // default 1
//     "kvCacheType": "F32",        // K and V cache type; default llama.cpp's (F16)
//     "flashAttention": false,     // default llama.cpp's ("auto")
//     "generate": {"tokens": 47},  // greedy decoding from BOS
//                                  // ("prompt": [ids] continues those instead)
//     "score": {"windows": [[ids...], ...], "from": 128, "topK": 0},
//     "tokenize": ["text", ...]
//   }
// Reply:
//   {
//     "model": {"bos": id, "eos": id, "addBos": bool},
//     "generate": {"tokens": [ids], "pieces": ["..."], "text": "..."},
//     "score": [{"logprobs": [...], "top": [[[id, logprob], ...], ...], "ms": 12.3}],
//     "tokenize": [[ids], ...]
//   }
// generate: tokens after BOS (or after the prompt), argmax at every step;
// pieces are the tokens' texts one by one; text is llama.cpp's
// detokenization of all of them. From BOS both are detokenized after the
// BOS token (which prints as nothing), so that the space SentencePiece
// vocabularies mark with "▁" is kept at the start.
// score: for window w and every position p with from <= p < len(w)-1, the
// natural-log probability llama.cpp's softmax of the logits at p gives the
// token w[p+1] (the window is evaluated from scratch, in one sequence); with
// topK > 0 also the topK most likely tokens at p with their log-probs.
// Probabilities come from a sampler with temperature 1 and no top-k/top-p/
// min-p truncation, i.e. softmax(logits). ms is the wall-clock time of the
// window's evaluation in milliseconds (llama_decode of the whole window plus
// the probabilities asked for; not the history clearing before it), measured
// in node with performance.now(). With from = len(w)-1 no position is scored
// and ms times prompt processing alone.
// tokenize: llama.cpp's tokenization of each text (no BOS, special token
// texts not parsed).
// On error the script prints {"error": "..."} and exits with status 1.

import path from "node:path";
import url from "node:url";

function fail(msg) {
    process.stdout.write(JSON.stringify({error: String(msg)}) + "\n");
    process.exit(1);
}

async function readStdin() {
    const chunks = [];
    for await (const c of process.stdin)
        chunks.push(c);
    return Buffer.concat(chunks).toString("utf8");
}

async function importNodeLlamaCpp() {
    const here = path.dirname(url.fileURLToPath(import.meta.url));
    const modules = process.env.ADAPTQ_NODE_MODULES || path.join(here, "..", "..", ".tools", "npm", "node_modules");
    const entry = path.join(modules, "node-llama-cpp", "dist", "index.js");
    return await import(url.pathToFileURL(entry).href);
}

// Softmax of the logits as a sampler with temperature 1 and nothing cut.
const fullDistribution = {temperature: 1, topK: 0, topP: 1, minP: 0};

async function main() {
    let req;
    try {
        req = JSON.parse(await readStdin());
    } catch (e) {
        fail("request is not JSON: " + e.message);
    }
    if (typeof req.model !== "string")
        fail("request has no model path");
    const {getLlama, LlamaLogLevel} = await importNodeLlamaCpp();
    const llama = await getLlama({
        gpu: false,
        build: "never",
        skipDownload: true,
        progressLogs: false,
        logLevel: LlamaLogLevel.error,
        logger: (level, message) => process.stderr.write(message)
    });
    const model = await llama.loadModel({modelPath: req.model, gpuLayers: 0, useMmap: true});
    const threads = req.threads ?? 1;
    const contextSize = req.contextSize ?? 512;
    const ctxOpts = {contextSize, batchSize: contextSize, sequences: 1, threads};
    if (req.kvCacheType != null) {
        ctxOpts.experimentalKvCacheKeyType = req.kvCacheType;
        ctxOpts.experimentalKvCacheValueType = req.kvCacheType;
    }
    if (req.flashAttention != null)
        ctxOpts.flashAttention = req.flashAttention;
    const context = await model.createContext(ctxOpts);
    const sequence = context.getSequence();
    const out = {
        model: {
            bos: model.tokens.bos,
            eos: model.tokens.eos,
            addBos: model.tokens.shouldPrependBosToken
        }
    };

    if (req.generate) {
        const n = req.generate.tokens ?? 16;
        const bos = model.tokens.bos;
        const prompt = req.generate.prompt;
        if (bos == null && prompt == null)
            fail("model has no BOS token");
        await sequence.clearHistory();
        // Feed each chosen token back explicitly: one step of controlled
        // evaluation per token, argmax over the full distribution.
        const tokens = [];
        let input = prompt ?? [bos];
        for (let i = 0; i < n; i++) {
            const items = input.map((t, j) => j === input.length - 1
                ? [t, {generateNext: {probabilities: true, options: fullDistribution}}]
                : t);
            const res = await sequence.controlledEvaluate(items);
            const probs = res[items.length - 1]?.next?.probabilities;
            if (probs == null)
                fail("no probabilities at generation step " + i);
            let best = -1, bestP = -1;
            for (const [tok, p] of probs) {
                if (p > bestP || (p === bestP && tok < best)) {
                    best = tok;
                    bestP = p;
                }
            }
            tokens.push(best);
            input = [best];
        }
        out.generate = prompt == null ? {
            tokens,
            pieces: tokens.map((t) => model.detokenize([bos, t], false)),
            text: model.detokenize([bos, ...tokens], false)
        } : {
            tokens,
            pieces: tokens.map((t) => model.detokenize([t], false)),
            text: model.detokenize(tokens, false)
        };
    }

    if (req.score) {
        const from = req.score.from ?? 0;
        const topK = req.score.topK ?? 0;
        out.score = [];
        for (const w of req.score.windows ?? []) {
            if (w.length > contextSize)
                fail(`window of ${w.length} tokens exceeds the context size ${contextSize}`);
            await sequence.clearHistory();
            const items = w.map((t, p) => p >= from && p < w.length - 1
                ? [t, {generateNext: {probabilities: true, options: fullDistribution}}]
                : t);
            const t0 = performance.now();
            const res = await sequence.controlledEvaluate(items);
            const ms = performance.now() - t0;
            const logprobs = [];
            const top = [];
            for (let p = from; p < w.length - 1; p++) {
                const probs = res[p]?.next?.probabilities;
                if (probs == null)
                    fail(`no probabilities at position ${p}`);
                const pr = probs.get(w[p + 1]) ?? 0;
                logprobs.push(pr > 0 ? Math.log(pr) : null);
                if (topK > 0) {
                    const t = [];
                    for (const [tok, q] of probs) {
                        if (t.length >= topK)
                            break;
                        t.push([tok, Math.log(q)]);
                    }
                    top.push(t);
                }
            }
            out.score.push(topK > 0 ? {logprobs, top, ms} : {logprobs, ms});
        }
    }

    if (req.tokenize) {
        out.tokenize = req.tokenize.map((s) => Array.from(model.tokenize(s, false)));
    }

    await context.dispose();
    await model.dispose();
    await llama.dispose();
    process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => fail(e && e.stack ? e.stack : e));
