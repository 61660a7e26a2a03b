// What the step-by-step SDK scripts share (live_stream_flow.mjs, asset_flow.mjs): an SDK
// client for OnAir from the environment, one JSON line per step on stdout, and a wait for the
// Rust test's line on stdin.
//
// Environment: ONAIR_URL (the gateway's base URL), TOKEN_ID, TOKEN_SECRET.
import Mux from '@mux/mux-node';
import readline from 'node:readline';

/** The SDK against OnAir, without retries; `options` are added (e.g. `fetch`). */
export const client = (options = {}) =>
  new Mux({
    tokenId: process.env.TOKEN_ID,
    tokenSecret: process.env.TOKEN_SECRET,
    baseURL: process.env.ONAIR_URL,
    maxRetries: 0,
    ...options,
  });

/** Prints `{"step": step, "value": value}` as one line. */
export const out = (step, value) => console.log(JSON.stringify({ step, value }));

const lines = readline.createInterface({ input: process.stdin });

/** Waits for the next line on stdin (the test's go-ahead). */
export const next = async () => {
  for await (const line of lines) return line.trim();
  return '';
};
