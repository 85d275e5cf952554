// The Retrace extension in a real VS Code: VS Code's web build (code-server) with
// the packaged .vsix installed, driven by Playwright through Debian's chromium.
// It records examples/llm_classify until it crashes, opens the workspace, opens the
// Retrace sidebar, replays the recording from there, waits for the stop at the
// crash, clicks Step Back and reads `response` in the Variables view: it must be
// the text the provider really sent. Screenshots go to $RETRACE_E2E_ARTIFACTS.
//
//   make e2e-vscode     (installs what this needs with tests/e2e/setup.sh, then runs it)
//
// Environment: RETRACE_PYTHON (a Python with retrace installed, required),
// RETRACE_VSIX, RETRACE_E2E_CACHE, RETRACE_E2E_ARTIFACTS.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");
const CACHE = process.env.RETRACE_E2E_CACHE || path.join(os.homedir(), ".cache/retrace-e2e");
const PYTHON = process.env.RETRACE_PYTHON;
const VSIX = process.env.RETRACE_VSIX || path.join(REPO, "editors/vscode/retrace.vsix");
const ARTIFACTS = process.env.RETRACE_E2E_ARTIFACTS || path.join(HERE, "artifacts");
const CODE_SERVER = path.join(CACHE, "node_modules/code-server/out/node/entry.js");
const STEP_TIMEOUT = 60_000;

const { chromium } = createRequire(path.join(CACHE, "package.json"))("playwright-core");

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitHealthy(url, child, log) {
  const deadline = Date.now() + STEP_TIMEOUT;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`code-server exited with ${child.exitCode}:\n${fs.readFileSync(log, "utf8")}`);
    }
    try {
      if ((await fetch(`${url}/healthz`)).ok) {
        return;
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`code-server did not answer /healthz in time:\n${fs.readFileSync(log, "utf8")}`);
}

// Clicks an idempotent control (a view switch, a hover) again until `done`
// appears: under load the workbench can drop an early click or mouse move.
async function until(action, done, attempts = 4) {
  for (let attempt = 1; ; attempt++) {
    await action();
    try {
      await done.waitFor({ timeout: STEP_TIMEOUT / attempts });
      return;
    } catch (error) {
      if (attempt === attempts) {
        throw error;
      }
    }
  }
}

function writeJson(file, value) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 2));
}

test("replay the llm_classify crash from the Retrace sidebar and step back", { timeout: 600_000 }, async (t) => {
  assert.ok(PYTHON, "set RETRACE_PYTHON to a Python with retrace installed");
  assert.ok(fs.existsSync(VSIX), `no ${VSIX}: run make vsix`);
  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const started = Date.now();
  const step = (what) => console.error(`e2e ${((Date.now() - started) / 1000).toFixed(1)} s: ${what}`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "retrace-e2e-"));
  // Undone last first: the browser, then code-server (and the adapter it started), then files.
  const cleanups = [() => fs.rmSync(root, { recursive: true, force: true })];
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) {
      await cleanup();
    }
  });

  // The recording, and what the provider really sent in the reply that crashed it.
  const workspace = path.join(root, "workspace");
  fs.mkdirSync(workspace);
  step("recording examples/llm_classify until it crashes");
  const recorded = JSON.parse(execFileSync(PYTHON, [path.join(HERE, "llm_recording.py"), workspace],
    { encoding: "utf8", timeout: 300_000 }));
  writeJson(path.join(workspace, ".vscode/settings.json"), { "retrace.python": PYTHON });

  // A VS Code of its own: user data, extensions, XDG dirs and browser profile under root.
  const data = path.join(root, "data");
  const extensions = path.join(root, "extensions");
  writeJson(path.join(data, "User/settings.json"), {
    "workbench.startupEditor": "none",
    "security.workspace.trust.enabled": false,
    "telemetry.telemetryLevel": "off",
    "workbench.tips.enabled": false,
    "extensions.ignoreRecommendations": true,
    "update.mode": "none",
  });
  const env = { ...process.env };
  for (const xdg of ["XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"]) {
    env[xdg] = path.join(root, xdg.toLowerCase());
  }
  const common = ["--user-data-dir", data, "--extensions-dir", extensions];
  execFileSync(process.execPath, [CODE_SERVER, ...common, "--install-extension", VSIX],
    { env, timeout: 120_000, stdio: "pipe" });

  step("extension installed; starting code-server");
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const log = path.join(ARTIFACTS, "code-server.log");
  const out = fs.openSync(log, "w");
  const server = spawn(process.execPath, [CODE_SERVER, ...common, "--bind-addr", `127.0.0.1:${port}`,
    "--auth", "none", "--disable-telemetry", "--disable-update-check", "--disable-workspace-trust",
    "--disable-getting-started-override", workspace], { env, stdio: ["ignore", out, out], detached: true });
  cleanups.push(() => {
    try {
      process.kill(-server.pid, "SIGTERM");
    } catch {
      // already gone
    }
  });
  await waitHealthy(url, server, log);

  const browser = await chromium.launchPersistentContext(path.join(root, "profile"), {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1400, height: 860 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  cleanups.push(() => Promise.race([browser.close(), new Promise((r) => setTimeout(r, 10_000))]));
  const page = browser.pages()[0] ?? await browser.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  const shot = (name) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), timeout: 10_000 });
  try {
    step("code-server is up; opening the workspace");
    await page.goto(`${url}/?folder=${encodeURIComponent(workspace)}`);
    await page.locator(".monaco-workbench").waitFor();
    // A wider side bar, so that the screenshots show whole values.
    const bar = await page.locator(".part.sidebar").boundingBox();
    if (bar) {
      await page.mouse.move(bar.x + bar.width + 1, bar.y + 200);
      await page.mouse.down();
      await page.mouse.move(bar.x + bar.width + 360, bar.y + 200, { steps: 5 });
      await page.mouse.up();
    }

    step("workbench loaded");
    // The Retrace sidebar lists the recording with its outcome.
    const retraceView = page.locator('.activitybar .action-item a[aria-label^="Retrace"]');
    const row = page.locator(".monaco-list-row", { hasText: "crash.retrace" });
    await until(() => retraceView.click(), row);
    await page.locator(".monaco-list-row", { hasText: "crashed: JSONDecodeError" }).waitFor();
    await shot("1-sidebar");

    // Clicking it opens the summary of the recording (a read-only custom editor).
    await row.click();
    const summary = page.frameLocator("iframe.webview").frameLocator("iframe").locator("body");
    await summary.locator("text=crashed: JSONDecodeError: Expecting value").waitFor();
    assert.match(await summary.innerText(), /llm_classify\/classify\.py 40/);
    await shot("2-summary");

    step("summary shown");

    // The Explorer offers "Replay in Retrace" on .retrace files.
    const explorerRow = page.locator(".explorer-folders-view .monaco-list-row", { hasText: "crash.retrace" });
    await until(() => page.locator('.activitybar .action-item a[aria-label^="Explorer"]').click(), explorerRow);
    await until(() => explorerRow.click({ button: "right" }),
      page.locator(".context-view .action-label", { hasText: "Replay in Retrace" }));
    await page.keyboard.press("Escape");
    await until(() => retraceView.click(), row);
    // Replay from the sidebar: the session starts stopped at the crash. Not
    // retried: a second click would start a second session.
    const replay = row.locator('.action-label[aria-label="Replay"]:not(.disabled)');
    await until(() => row.hover(), replay);
    await replay.click();
    // The Call Stack pane's header shows the state of its only thread.
    const callStackHeader = page.locator(".pane-header", { hasText: /Call Stack/i });
    const callStack = page.locator(".debug-call-stack");
    await callStackHeader.filter({ hasText: /Uncaught JSONDecodeError/i }).waitFor();
    await callStack.locator(".monaco-list-row", { hasText: "classify_intent" }).first().waitFor();
    await page.locator(".exception-widget", { hasText: "JSONDecodeError" }).waitFor();
    await page.locator('.debug-variables .monaco-list-row[aria-label^="message,"]').waitFor();
    await page.mouse.move(5, 500);
    await shot("3-stopped-at-crash");

    step("stopped at the crash");
    // Step back from the crash: the reply the program got is in `response`.
    // Once the toolbar has taken the stop: a click on a disabled button is lost.
    await page.locator('.debug-toolbar .action-label[aria-label^="Step Back"]:not(.disabled)').click();
    await callStackHeader.filter({ hasText: /Paused on step/i }).waitFor();
    const classify = fs.readFileSync(path.join(workspace, "llm_classify/classify.py"), "utf8");
    const loadsLine = classify.split("\n").findIndex((l) => l.includes("data = json.loads(response)")) + 1;
    await callStack.locator(".monaco-list-row", { hasText: new RegExp(`classify_intent\\s*classify\\.py\\s*${loadsLine}:`) }).first().waitFor();
    const response = page.locator('.debug-variables .monaco-list-row[aria-label^="response,"]');
    await response.waitFor();
    const text = (await response.innerText()).replace(/\s+/g, " ");
    await page.mouse.move(5, 500);
    await shot("4-step-back");
    const shown = JSON.stringify(recorded.text).slice(1, -1);
    step(`after Step Back: ${text}`);
    assert.ok(text.includes(shown), `Variables view shows ${JSON.stringify(text)}, the provider sent ${JSON.stringify(recorded.text)}`);

    // Hovering over `response` in the editor evaluates it (in a throwaway process).
    const loads = page.locator(".view-lines .view-line", { hasText: "data = json.loads(response)" });
    const hover = page.locator(".debug-hover-widget");
    await until(async () => {
      await page.mouse.move(5, 500);
      await loads.locator("span", { hasText: /^response$/ }).hover();
    }, hover);
    const hovered = (await hover.innerText()).replace(/\s+/g, " ");
    assert.ok(hovered.includes(shown), `the hover shows ${JSON.stringify(hovered)}`);
    await shot("5-hover");
  } catch (error) {
    await shot("failure").catch(() => undefined);
    throw error;
  }
});
