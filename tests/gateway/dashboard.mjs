// dashboard.mjs QUESTION - drive the dashboard in headless Chromium over the
// DevTools protocol (--remote-debugging-pipe: no port, no extra package):
// open http://$GW/?poll=0, wait until it is live, run `$SUBMIT QUESTION`,
// then wait (up to 30 s) until the page, never reloaded, shows every
// agent's USD used as `emadsctl spend` reports it and every step of the
// task in the state `emadsctl result` reports. Saves a screenshot to
// $DASH_SHOT; prints {"task": ID} on success, exits 1 with the page's last
// state otherwise.
import { spawn, execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";

const { GW, CHROMIUM, DASH_SHOT, PROFILE, SUBMIT } = process.env;
const CTL = SUBMIT.replace(/ --json submit --wait$/, "").split(" ");
const question = process.argv[2];

const chrome = spawn(CHROMIUM, [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--user-data-dir=" + PROFILE, "--remote-debugging-pipe", "--window-size=1280,1500",
  "about:blank",
], { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
let chromeErr = "";
chrome.stderr.on("data", (d) => { chromeErr = (chromeErr + d).slice(-4000); });

// ---- CDP over the pipe: JSON messages ended by NUL ----
let nextId = 1, inbuf = Buffer.alloc(0);
const pending = new Map();
chrome.stdio[4].on("data", (d) => {
  inbuf = Buffer.concat([inbuf, d]);
  let z;
  while ((z = inbuf.indexOf(0)) >= 0) {
    const msg = JSON.parse(inbuf.subarray(0, z).toString());
    inbuf = inbuf.subarray(z + 1);
    const p = msg.id && pending.get(msg.id);
    if (p) {
      pending.delete(msg.id);
      msg.error ? p.reject(new Error(JSON.stringify(msg.error))) : p.resolve(msg.result);
    }
  }
});
function send(method, params = {}, sessionId) {
  const id = nextId++;
  chrome.stdio[3].write(JSON.stringify({ id, method, params, sessionId }) + "\0");
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function die(why, last) {
  console.error("dashboard.mjs: " + why);
  if (last !== undefined) console.error("page state: " + JSON.stringify(last, null, 1));
  if (chromeErr && !last) console.error("chromium: " + chromeErr);
  chrome.kill("SIGKILL");
  process.exit(1);
}
setTimeout(() => die("gave up after 90 s"), 90000).unref();

const { targetId } = await send("Target.createTarget", { url: "about:blank" });
const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
const page = (m, p) => send(m, p, sessionId);
const evaluate = async (expr) => {
  const r = await page("Runtime.evaluate", { expression: expr, returnByValue: true, awaitPromise: true });
  if (r.exceptionDetails) throw new Error(JSON.stringify(r.exceptionDetails));
  return r.result.value;
};
await page("Page.enable");
await page("Emulation.setDeviceMetricsOverride", { width: 1200, height: 1400, deviceScaleFactor: 1, mobile: false });
await page("Page.navigate", { url: `http://${GW}/?poll=0` });

// What the page shows: agents' USD cells, the tasks' steps, and a marker
// set once after load (gone if the page reloaded).
const SNAPSHOT = `(() => ({
  marker: window.__dashMarker || null,
  conn: document.getElementById("conn")?.textContent,
  agents: [...document.querySelectorAll("#spend tbody tr")].map((tr) => ({
    name: tr.dataset.agent, usd: tr.cells[1]?.textContent })),
  tasks: [...document.querySelectorAll("#tasks .task")].map((t) => ({
    task: t.dataset.task, state: t.querySelector(".task-head .state")?.textContent,
    steps: [...t.querySelectorAll("tr[data-step]")].map((tr) => ({
      step: tr.dataset.step, agent: tr.cells[1].textContent, state: tr.cells[2].textContent })) })),
  notasks: document.querySelector("#tasks .note")?.textContent || null,
}))()`;

let snap;
for (let i = 0; ; i++) {
  try { snap = await evaluate(SNAPSHOT); } catch (_) { snap = null; }
  if (snap && snap.conn === "live" && snap.agents.length > 0 && snap.notasks) break;
  if (i > 200) die("the page never became live with its spend table and no tasks", snap);
  await sleep(100);
}
await evaluate("window.__dashMarker = 'loaded-once'");

// the task, after the page loaded
const submitted = JSON.parse(execFileSync(CTL[0], [...CTL.slice(1), "--json", "submit", "--wait", question]).toString());
const task = submitted.task;
const result = JSON.parse(execFileSync(CTL[0], [...CTL.slice(1), "--json", "result", task]).toString());
const spend = JSON.parse(execFileSync(CTL[0], [...CTL.slice(1), "--json", "spend"]).toString());
const usd = (u) => "$" + (u / 1e6).toFixed(u >= 1e6 ? 2 : 4);
if (!spend.agents.some((a) => a.used.cost_uusd > 0)) die("the task spent nothing: the check proves little");
if ((result.steps || []).length < 3) die("fewer than 3 steps in the task's result");

let problems = [];
for (let i = 0; i < 300; i++) {
  snap = await evaluate(SNAPSHOT);
  problems = [];
  if (snap.marker !== "loaded-once") die("the page was reloaded", snap);
  for (const a of spend.agents) {
    const row = snap.agents.find((r) => r.name === a.name);
    const want = usd(a.used.cost_uusd) + " / ";
    if (!row || !row.usd.startsWith(want)) problems.push(`agent ${a.name}: page shows '${row && row.usd}', want '${want}…'`);
  }
  const t = snap.tasks.find((x) => x.task === task);
  if (!t) problems.push(`task ${task} is not on the page`);
  else
    for (const s of result.steps) {
      const row = t.steps.find((r) => r.step === s.step);
      if (!row || row.state !== s.state || row.agent !== s.agent)
        problems.push(`step ${s.step}: page shows ${JSON.stringify(row)}, want ${s.agent} ${s.state}`);
    }
  if (problems.length === 0) break;
  await sleep(100);
}
const shot = await page("Page.captureScreenshot", { format: "png", captureBeyondViewport: true });
writeFileSync(DASH_SHOT, Buffer.from(shot.data, "base64"));
if (problems.length) die("the page did not update live:\n  " + problems.join("\n  "), snap);
console.log(JSON.stringify({ task, steps: result.steps.length, agents: spend.agents.length }));
await send("Browser.close").catch(() => {});
chrome.kill("SIGKILL");
process.exit(0);
