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
  socket: null, timer: null, streaming: false, window: 2, capturing: false, skipped: 0, sent: 0, received: 0, dropped: 0, failed: 0,
  latencies: [], allLatencies: [], gatewayWait: [], triton: [], shown: [], fake: null, sentJpegs: new Map(), lastPair: null,
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
  $("fake").textContent = s.fake_score === null ? "-" : s.fake_score.toFixed(2);
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

async function capture(video, canvas) {
  const socket = state.socket;
  // frames go out once the gateway said hello (a busy gateway never does)
  if (!state.streaming || socket.readyState !== WebSocket.OPEN || !video.videoWidth) return;
  // a frame still encoding, or a socket still sending: skip this tick, send the next fresh frame
  // or as many frames on their way as the gateway can hold (its window and one waiting frame):
  // a frame sent then would only replace the waiting one, after costing an encode and a decode
  const inflight = state.sent - state.received - state.dropped - state.failed;
  if (state.capturing || socket.bufferedAmount > 0 || inflight >= state.window) {
    state.skipped += 1;
    return;
  }
  state.capturing = true;
  try {
    const t = performance.now();
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const jpeg = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
    const stamp = new Float64Array([t]);
    socket.send(new Blob([stamp, jpeg]));
    state.sent += 1;
    state.sentJpegs.set(t, jpeg);
    if (state.sentJpegs.size > KEEP_SENT) state.sentJpegs.delete(state.sentJpegs.keys().next().value);
  } finally {
    state.capturing = false;
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
  if (header.fake_score !== null) state.fake = header.fake_score;
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
  const canvas = document.createElement("canvas");
  state.timer = setInterval(() => capture(video, canvas), 1000 / FPS);
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
