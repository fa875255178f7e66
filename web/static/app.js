// The page: camera frames to the gateway as JPEG, swapped frames back, glass-to-glass timing.
// Wire format: see web/session.py. Latency is measured from the page's capture of a frame to
// the moment its swapped frame is drawn, both on the page's own clock (performance.now()).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const FPS = Math.min(Number(params.get("fps")) || 24, 60);
const JPEG_QUALITY = 0.8;
const KEEP_LATENCIES = 240;   // the live percentiles cover the last 10 s at 24 fps
const KEEP_SENT = 16;         // sent JPEGs kept to pair with their answers (the test's check)

const state = {
  socket: null, timer: null, streaming: false, window: 2, encoding: 0, skipped: 0, sent: 0, received: 0, dropped: 0, failed: 0,
  latencies: [], allLatencies: [], gatewayWait: [], triton: [], shown: [], fake: null, verdict: null, sentJpegs: new Map(), lastPair: null,
  status: "",
};

function setStatus(text) { state.status = text; $("status").textContent = text; }

function percentile(values, q) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (sorted.length - 1) * q;
  const low = Math.floor(rank), high = Math.ceil(rank);
  return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
}

function stats() {
  const now = performance.now();
  state.shown = state.shown.filter((t) => now - t < 2000);
  return {
    sent: state.sent, received: state.received, dropped: state.dropped, failed: state.failed,
    skipped: state.skipped, inflight: state.sent - state.received - state.dropped - state.failed,
    fps: state.shown.length / 2, p50: percentile(state.latencies, 0.5),
    p95: percentile(state.latencies, 0.95), fake_score: state.fake, status: state.status,
    latencies: state.allLatencies.slice(), gateway_wait_p50: percentile(state.gatewayWait, 0.5),
    triton_p50: percentile(state.triton, 0.5), triton_p95: percentile(state.triton, 0.95),
  };
}

function render() {
  const s = stats();
  $("fps").textContent = s.fps.toFixed(1);
  $("p50").textContent = isNaN(s.p50) ? "-" : s.p50.toFixed(0);
  $("p95").textContent = isNaN(s.p95) ? "-" : s.p95.toFixed(0);
  for (const key of ["sent", "received", "dropped", "failed"]) $(key).textContent = s[key];
  $("fake").textContent = s.fake_score === null ? "-"
    : s.fake_score.toFixed(2) + (state.verdict ? ` (${state.verdict})` : "");
}

function fillPicker(select, names, chosen) {
  select.replaceChildren(...names.map((name) => new Option(name, name, false, name === chosen)));
}

function sendChoice() {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify({ type: "choose", identity: $("identity").value || null,
                                       faces: $("faces").value || null }));
  }
}

// JPEG encoding runs in a worker (web/static/encoder.js), in capture order, so the main thread
// keeps drawing answers while frames encode; encodes wait their turn there
const encoder = new Worker("encoder.js");
const encodes = new Map();
let lastEncode = 0;
encoder.onmessage = (event) => {
  const resolve = encodes.get(event.data.id);
  encodes.delete(event.data.id);
  resolve(event.data.jpeg);
};

function encode(bitmap) {
  return new Promise((resolve) => {
    lastEncode += 1;
    encodes.set(lastEncode, resolve);
    encoder.postMessage({ id: lastEncode, bitmap, quality: JPEG_QUALITY }, [bitmap]);
  });
}

async function capture(video) {
  const socket = state.socket;
  // frames go out once the gateway said hello (a busy gateway never does)
  if (!state.streaming || socket.readyState !== WebSocket.OPEN || !video.videoWidth) return;
  // as many frames on their way (encoding, or sent and not answered) as the gateway's window:
  // a frame sent beyond it would only replace the one waiting there, after costing an encode
  // and a decode; a socket still sending also skips this tick
  const inflight = state.sent - state.received - state.dropped - state.failed + state.encoding;
  if (socket.bufferedAmount > 0 || inflight >= state.window) {
    state.skipped += 1;
    return;
  }
  state.encoding += 1;
  try {
    const t = performance.now();
    const jpeg = await encode(await createImageBitmap(video));
    if (!state.streaming || socket.readyState !== WebSocket.OPEN) {
      state.skipped += 1;  // stopped while it encoded: never sent
      return;
    }
    const stamp = new Float64Array([t]);
    socket.send(new Blob([stamp, jpeg]));
    state.sent += 1;
    state.sentJpegs.set(t, jpeg);
    if (state.sentJpegs.size > KEEP_SENT) state.sentJpegs.delete(state.sentJpegs.keys().next().value);
  } finally {
    state.encoding -= 1;
  }
}

async function showAnswer(buffer) {
  const headerLength = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, headerLength)));
  const jpeg = new Blob([new Uint8Array(buffer, 4 + headerLength)], { type: "image/jpeg" });
  const bitmap = await createImageBitmap(jpeg);
  const output = $("output");
  if (output.width !== bitmap.width) output.width = bitmap.width;
  if (output.height !== bitmap.height) output.height = bitmap.height;
  output.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  const shown = performance.now();
  const latency = shown - header.t;
  state.received += 1;
  state.shown.push(shown);
  state.latencies.push(latency);
  state.allLatencies.push(latency);
  state.gatewayWait.push(header.gateway_ms.wait);
  state.triton.push(header.gateway_ms.triton);
  for (const series of [state.latencies, state.gatewayWait, state.triton]) {
    if (series.length > KEEP_LATENCIES) series.shift();
  }
  if (header.fake_score !== null) {
    state.fake = header.fake_score;
    state.verdict = header.verdict;
  }
  const sent = state.sentJpegs.get(header.t);
  if (sent) state.lastPair = { input: sent, output: jpeg, faces: header.faces };
}

function onMessage(event) {
  if (typeof event.data !== "string") { showAnswer(event.data); return; }
  const message = JSON.parse(event.data);
  if (message.type === "hello") {
    state.streaming = true;
    state.window = message.max_inflight;
    fillPicker($("identity"), message.identities, message.default);
    fillPicker($("faces"), message.faces, message.faces[0]);
    setStatus(`streaming through ${message.model}` + (message.checked ? " (with fake score)" : ""));
  } else if (message.type === "dropped") {
    state.dropped += 1;
  } else if (message.type === "failed") {
    state.failed += 1;
    setStatus(`a frame failed: ${message.error}`);
  } else if (message.type === "busy" || message.type === "refused" || message.type === "error") {
    setStatus(message.message);
  }
}

async function start() {
  $("start").disabled = true;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    setStatus(`no camera: ${error.message}`);
    $("start").disabled = false;
    return;
  }
  const video = $("preview");
  video.srcObject = stream;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const token = params.get("token");
  const socket = new WebSocket(`${scheme}://${location.host}/ws` +
                               (token ? `?token=${encodeURIComponent(token)}` : ""));
  socket.binaryType = "arraybuffer";
  socket.onmessage = onMessage;
  socket.onclose = (event) => {
    if (event.code === 1013) setStatus("server busy: try again later");
    else if (state.socket === socket && !state.status.startsWith("stopped")) {
      if (event.code !== 1000) setStatus(`connection closed (${event.code} ${event.reason})`);
    }
    stop(false);
  };
  state.socket = socket;
  state.timer = setInterval(() => capture(video), 1000 / FPS);
  $("stop").disabled = false;
}

async function stop(byUser = true) {
  state.streaming = false;
  clearInterval(state.timer);
  state.timer = null;
  $("stop").disabled = true;
  const socket = state.socket;
  if (socket && byUser) {
    // let the frames still on their way come back (at most 3 s), so the counters add up
    const deadline = performance.now() + 3000;
    while (stats().inflight > 0 && socket.readyState === WebSocket.OPEN && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    socket.close(1000, "stopped");
  }
  const video = $("preview");
  if (video.srcObject) video.srcObject.getTracks().forEach((track) => track.stop());
  video.srcObject = null;
  if (byUser) setStatus("stopped");
  $("start").disabled = false;
}

async function blobBase64(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

// what tests and the benchmark read
window.swaptron = {
  stats,
  async lastPair() {
    const pair = state.lastPair;
    if (!pair) return null;
    return { input: await blobBase64(pair.input), output: await blobBase64(pair.output), faces: pair.faces };
  },
};

$("start").onclick = start;
$("stop").onclick = () => stop(true);
$("identity").onchange = sendChoice;
$("faces").onchange = sendChoice;
setInterval(render, 250);
