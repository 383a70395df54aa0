#!/usr/bin/env node
// Split a 16-bit PCM WAV file into cut points with a seamcut server.
//
//   node examples/node/split.js FILE.wav [--server HOST:PORT] [--json]
//
// Prints "sample seconds kind" per cut as it arrives (on stderr with --json, so that
// stdout holds the JSON document alone). Exit codes follow `seamcut split`
// (client/explain.py): 0 ok, 1 the server ended the stream with an error, 2 usage or
// file error (nothing was sent), 4 no connection.
// The contract: docs/PROTOCOL.md, docs/OTHER_LANGUAGES.md.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const EXIT_STREAM = 1;
const EXIT_USAGE = 2;
const EXIT_CONNECT = 4;
const DEFAULT_PORT = 50051;
const USAGE = "usage: node split.js FILE.wav [--server HOST:PORT] [--json]";
// A chunk must fit in the server's 1 MiB message limit (Capabilities.max_message_bytes):
// one second is 16 KB at 8 kHz mono but 3 MB at 192 kHz with 8 channels.
const MAX_CHUNK_BYTES = 512 * 1024;
const PROTOS = path.join(__dirname, "..", "..", "protos");

class UsageError extends Error {}

function parseArgs(argv) {
  const args = { file: null, server: `localhost:${DEFAULT_PORT}`, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--json") args.json = true;
    else if (a === "--server") {
      if (i + 1 >= argv.length) throw new UsageError("--server needs HOST:PORT");
      args.server = argv[++i];
    } else if (a.startsWith("--server=")) args.server = a.slice("--server=".length);
    else if (a.startsWith("-") && a !== "-") throw new UsageError(`unknown option ${a}`);
    else if (args.file === null) args.file = a;
    else throw new UsageError(`unexpected argument ${a}`);
  }
  if (args.file === null) throw new UsageError("FILE.wav is missing");
  // grpc takes a bare host to mean port 443, which no seamcut server uses.
  if (!/:\d+$/.test(args.server)) args.server = `${args.server}:${DEFAULT_PORT}`;
  return args;
}

// Parse a RIFF/WAVE file: 16-bit integer PCM only, the format PCM_S16LE carries
// unchanged. Returns { rate, channels, data } (data: the interleaved frames).
function readWav(file) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(`${file}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
  }
  const bad = (why) => new UsageError(`${file}: ${why}`);
  if (buf.length < 12 || buf.toString("latin1", 0, 4) !== "RIFF"
      || buf.toString("latin1", 8, 12) !== "WAVE") {
    throw bad("not a WAV file (no RIFF/WAVE header); convert it to 16-bit PCM WAV");
  }
  let fmt = null;
  let data = null;
  for (let off = 12; off + 8 <= buf.length;) {
    const id = buf.toString("latin1", off, off + 4);
    const size = buf.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === "fmt ") {
      if (size < 16 || body + size > buf.length) throw bad("malformed fmt chunk");
      let tag = buf.readUInt16LE(body);
      // WAVE_FORMAT_EXTENSIBLE (more than 2 channels, or a channel mask) keeps the real
      // format tag in the first two bytes of its SubFormat GUID.
      if (tag === 0xfffe && size >= 40) tag = buf.readUInt16LE(body + 24);
      fmt = {
        tag,
        channels: buf.readUInt16LE(body + 2),
        rate: buf.readUInt32LE(body + 4),
        blockAlign: buf.readUInt16LE(body + 12),
        bits: buf.readUInt16LE(body + 14),
      };
    } else if (id === "data") {
      if (body + size > buf.length) {
        throw bad(`truncated data chunk (${size} bytes declared, ${buf.length - body} present)`);
      }
      data = buf.subarray(body, body + size);
    }
    off = body + size + (size & 1); // chunks are padded to an even length
  }
  if (fmt === null) throw bad("no fmt chunk");
  if (fmt.tag !== 1 || fmt.bits !== 16) {
    throw bad(`${fmt.bits}-bit audio in format 0x${fmt.tag.toString(16)}; only 16-bit `
      + "integer PCM is supported (convert it, e.g. sox IN -b 16 -e signed OUT.wav)");
  }
  if (fmt.channels < 1 || fmt.blockAlign !== 2 * fmt.channels) throw bad("malformed fmt chunk");
  if (data === null) throw bad("no data chunk");
  if (data.length % fmt.blockAlign !== 0) throw bad("data chunk is not a whole number of frames");
  return { rate: fmt.rate, channels: fmt.channels, data };
}

function main() {
  let args;
  let wav;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`error: ${err.message}\n${USAGE}\n`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  try {
    wav = readWav(args.file);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`error: ${err.message}\n`);
    process.exitCode = EXIT_USAGE;
    return;
  }

  const def = loader.loadSync(path.join(PROTOS, "seamcut", "v1", "seamcut.proto"), {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
    includeDirs: [PROTOS],
  });
  const { Seamcut } = grpc.loadPackageDefinition(def).seamcut.v1;
  const client = new Seamcut(args.server, grpc.credentials.createInsecure());
  const call = client.StreamCuts();
  const cuts = [];
  const lines = args.json ? process.stderr : process.stdout;
  let answered = false; // the server sent something: UNAVAILABLE is then its own word
  let ended = false;

  call.on("data", (m) => {
    answered = true;
    if (m.msg !== "cut") return;
    const kind = m.cut.kind.toLowerCase();
    // longs: String gives int64 as a string; a WAV's frame count is far below 2^53.
    const sample = Number(m.cut.sample);
    cuts.push({ sample, kind });
    lines.write(`${sample} ${m.cut.seconds.toFixed(3)} ${kind}\n`);
  });
  // grpc-js emits every non-OK status as an 'error' as well as a 'status'; without a
  // listener the 'error' would be thrown. 'status' below handles both outcomes.
  call.on("error", () => {});
  call.on("status", (s) => {
    ended = true;
    client.close();
    if (s.code === grpc.status.OK) {
      if (args.json) process.stdout.write(JSON.stringify({ cuts }) + "\n");
      return;
    }
    const name = grpc.status[s.code] ?? String(s.code); // a TypeScript enum: code -> name
    const details = String(s.details ?? "").replace(/\s+/g, " ").trim();
    process.stderr.write(`error: ${name}: ${details}\n`);
    const noConnection = s.code === grpc.status.UNAVAILABLE && !answered
      && !/drain|shutting down/i.test(details);
    process.exitCode = noConnection ? EXIT_CONNECT : EXIT_STREAM;
  });

  send(call, wav, () => ended).catch((err) => {
    // Exit at once: cancelling would end the call with a second, CANCELLED, line.
    process.stderr.write(`error: sending failed: ${err.message}\n`);
    process.exit(EXIT_STREAM);
  });
}

async function send(call, wav, isEnded) {
  const frameBytes = 2 * wav.channels;
  const chunkBytes = Math.min(wav.rate, Math.floor(MAX_CHUNK_BYTES / frameBytes)) * frameBytes;
  call.write({ config: {
    format: { encoding: "PCM_S16LE", sample_rate_hz: wav.rate, channels: wav.channels },
    events: { chunk_traces: false }, // a file client: fewer messages, more throughput
    request_id: "node-example",
  } });
  // Audio may follow the config at once; flow control holds it until the server reads.
  for (let seq = 0, off = 0; off < wav.data.length && !isEnded(); seq++, off += chunkBytes) {
    const data = wav.data.subarray(off, off + chunkBytes);
    if (!call.write({ audio: { seq, data } })) {
      // The status ends the wait too: a stream that ended with an error never drains.
      await firstOf(call, ["drain", "status"]);
    }
  }
  if (!isEnded()) call.end(); // half-close: the END cut and the Summary follow
}

// Resolve on the first of these events. Not events.once: it rejects on the 'error'
// that grpc-js emits with every failed status.
function firstOf(emitter, names) {
  return new Promise((resolve) => {
    const done = () => {
      for (const n of names) emitter.off(n, done);
      resolve();
    };
    for (const n of names) emitter.on(n, done);
  });
}

main();
