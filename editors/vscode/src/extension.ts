// The Retrace extension: the `retrace` debug type (it runs `retrace dap` with the
// configured Python), the Recordings sidebar, "Replay in Retrace" in the Explorer,
// and a summary view for .retrace files. Everything it knows about a recording
// comes from `python -m retrace inspect --json`.
import { execFile } from "node:child_process";
import * as path from "node:path";
import * as vscode from "vscode";

interface Summary {
  path: string;
  argv: string[];
  cwd: string;
  python: string;
  start_time: number;
  duration: number | null;
  exception: string | null;
  exit_code: number | null;
  threads: number;
  event_total: number;
  size: number;
  complete: boolean;
  children: string[];
}

function python(): string {
  return vscode.workspace.getConfiguration("retrace").get<string>("python") || "python3";
}

// Summaries, keyed by path and remembered until the file's mtime changes.
const summaries = new Map<string, { mtime: number; summary: Promise<Summary> }>();

async function summarize(uri: vscode.Uri): Promise<Summary> {
  const mtime = (await vscode.workspace.fs.stat(uri)).mtime;
  const cached = summaries.get(uri.fsPath);
  if (cached && cached.mtime === mtime) {
    return cached.summary;
  }
  const summary = new Promise<Summary>((resolve, reject) => {
    execFile(python(), ["-m", "retrace", "inspect", "--json", uri.fsPath],
      { timeout: 60_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
        if (error) {
          reject(new Error(stderr.trim() || error.message));
        } else {
          resolve(JSON.parse(stdout) as Summary);
        }
      });
  });
  summaries.set(uri.fsPath, { mtime, summary });
  summary.catch(() => summaries.delete(uri.fsPath));
  return summary;
}

function program(s: Summary): string {
  return s.argv.join(" ");
}

function started(s: Summary): string {
  return new Date(s.start_time * 1000).toLocaleString();
}

function duration(s: Summary): string {
  return s.duration === null ? "unknown" : `${s.duration.toFixed(3)} s`;
}

function outcome(s: Summary): string {
  const status = s.exception ? `crashed: ${s.exception}` : `exit status ${s.exit_code}`;
  return s.complete ? status : `${status} (recording cut short)`;
}

// The facts shown for a recording, in the sidebar and in the summary view alike.
function facts(s: Summary): [string, string][] {
  return [
    ["Program", program(s)],
    ["Started", started(s)],
    ["Duration", duration(s)],
    ["Outcome", outcome(s)],
    ["Python", s.python],
    ["Working directory", s.cwd],
    ["Threads", String(s.threads)],
    ["Events", String(s.event_total)],
    ["Size", `${s.size.toLocaleString()} bytes`],
    ...s.children.map((c): [string, string] => ["Forked child", path.basename(c)]),
  ];
}

async function replay(uri: vscode.Uri | undefined): Promise<void> {
  uri = uri ?? (await pickRecording());
  if (!uri) {
    return;
  }
  const folder = vscode.workspace.getWorkspaceFolder(uri);
  await vscode.debug.startDebugging(folder, {
    type: "retrace",
    request: "launch",
    name: `Replay ${path.basename(uri.fsPath)}`,
    recording: uri.fsPath,
    stopAtCrash: true,
  });
}

async function pickRecording(): Promise<vscode.Uri | undefined> {
  const files = await vscode.workspace.findFiles("**/*.retrace", "**/node_modules/**");
  if (files.length === 1) {
    return files[0];
  }
  const picked = await vscode.window.showQuickPick(
    files.map((uri) => ({ label: vscode.workspace.asRelativePath(uri), uri })),
    { placeHolder: files.length ? "The recording to replay" : "No *.retrace files in this workspace" });
  return picked?.uri;
}

// ---------------------------------------------------------------------------
// The Recordings sidebar: one item per *.retrace file, its facts as children.

type Node = RecordingNode | FactNode;

class RecordingNode extends vscode.TreeItem {
  constructor(readonly uri: vscode.Uri, readonly summary: Summary | Error) {
    super(path.basename(uri.fsPath), vscode.TreeItemCollapsibleState.Collapsed);
    this.resourceUri = uri;
    this.contextValue = "recording";
    this.command = { command: "retrace.showSummary", title: "Show Summary", arguments: [uri] };
    if (summary instanceof Error) {
      this.description = "unreadable";
      this.tooltip = summary.message;
      this.iconPath = new vscode.ThemeIcon("warning");
    } else {
      this.description = summary.exception
        ? `crashed: ${summary.exception.split(":")[0]}`
        : `exit ${summary.exit_code}`;
      this.tooltip = facts(summary).map(([k, v]) => `${k}: ${v}`).join("\n");
      this.iconPath = new vscode.ThemeIcon(summary.exception ? "bug" : "pass");
    }
  }
}

class FactNode extends vscode.TreeItem {
  constructor(label: string, value: string) {
    super(label, vscode.TreeItemCollapsibleState.None);
    this.description = value;
    this.tooltip = value;
  }
}

class Recordings implements vscode.TreeDataProvider<Node> {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;

  refresh(): void {
    this.changed.fire();
  }

  getTreeItem(node: Node): vscode.TreeItem {
    return node;
  }

  async getChildren(node?: Node): Promise<Node[]> {
    if (node instanceof RecordingNode) {
      return node.summary instanceof Error
        ? [new FactNode("Error", node.summary.message)]
        : facts(node.summary).map(([k, v]) => new FactNode(k, v));
    }
    if (node) {
      return [];
    }
    const files = await vscode.workspace.findFiles("**/*.retrace", "**/node_modules/**");
    files.sort((a, b) => a.fsPath.localeCompare(b.fsPath));
    return Promise.all(files.map(async (uri) =>
      new RecordingNode(uri, await summarize(uri).catch((e: Error) => e))));
  }
}

// ---------------------------------------------------------------------------
// Opening a .retrace file shows its summary, with a Replay button.

class SummaryEditor implements vscode.CustomReadonlyEditorProvider {
  openCustomDocument(uri: vscode.Uri): vscode.CustomDocument {
    return { uri, dispose: () => undefined };
  }

  async resolveCustomEditor(document: vscode.CustomDocument, panel: vscode.WebviewPanel): Promise<void> {
    panel.webview.options = { enableScripts: true };
    panel.webview.onDidReceiveMessage((message) => {
      if (message === "replay") {
        void replay(document.uri);
      }
    });
    let body: string;
    try {
      const s = await summarize(document.uri);
      const rows = facts(s).map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(v)}</td></tr>`);
      body = `<table>${rows.join("")}</table><p><button id="replay">Replay</button></p>`;
    } catch (e) {
      body = `<p class="error">${escape((e as Error).message)}</p>`;
    }
    const nonce = Math.random().toString(36).slice(2);
    panel.webview.html = `<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-${nonce}';">
<style>
  body { font-family: var(--vscode-font-family); color: var(--vscode-foreground); }
  th { text-align: left; padding-right: 2em; font-weight: normal; color: var(--vscode-descriptionForeground); }
  td { font-family: var(--vscode-editor-font-family); }
  button { background: var(--vscode-button-background); color: var(--vscode-button-foreground); border: none; padding: 4px 14px; cursor: pointer; }
  .error { color: var(--vscode-errorForeground); }
</style></head>
<body><h2>${escape(path.basename(document.uri.fsPath))}</h2>${body}
<script nonce="${nonce}">
  const vscode = acquireVsCodeApi();
  document.getElementById("replay")?.addEventListener("click", () => vscode.postMessage("replay"));
</script></body></html>`;
  }
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// ---------------------------------------------------------------------------
// The debug type.

class AdapterFactory implements vscode.DebugAdapterDescriptorFactory {
  createDebugAdapterDescriptor(session: vscode.DebugSession): vscode.DebugAdapterDescriptor {
    const cwd = session.workspaceFolder?.uri.fsPath;
    return new vscode.DebugAdapterExecutable(python(), ["-m", "retrace", "dap"], { cwd });
  }
}

class ConfigurationProvider implements vscode.DebugConfigurationProvider {
  // F5 with no launch.json: replay a recording of the workspace.
  async resolveDebugConfiguration(folder: vscode.WorkspaceFolder | undefined,
    config: vscode.DebugConfiguration): Promise<vscode.DebugConfiguration | undefined> {
    if (!config.type && !config.request && !config.name) {
      const uri = await pickRecording();
      if (!uri) {
        return undefined;
      }
      return { type: "retrace", request: "launch", name: "Replay", recording: uri.fsPath };
    }
    if (!config.cwd && folder) {
      config.cwd = folder.uri.fsPath;
    }
    return config;
  }
}

export function activate(context: vscode.ExtensionContext): void {
  const recordings = new Recordings();
  const watcher = vscode.workspace.createFileSystemWatcher("**/*.retrace");
  context.subscriptions.push(
    vscode.window.registerTreeDataProvider("retrace.recordings", recordings),
    watcher,
    watcher.onDidCreate(() => recordings.refresh()),
    watcher.onDidDelete(() => recordings.refresh()),
    watcher.onDidChange(() => recordings.refresh()),
    vscode.commands.registerCommand("retrace.refresh", () => recordings.refresh()),
    vscode.commands.registerCommand("retrace.replay",
      (target?: vscode.Uri | RecordingNode) => replay(target instanceof RecordingNode ? target.uri : target)),
    vscode.commands.registerCommand("retrace.replayInRetrace", (uri?: vscode.Uri) => replay(uri)),
    vscode.commands.registerCommand("retrace.showSummary", (uri: vscode.Uri) =>
      vscode.commands.executeCommand("vscode.openWith", uri, "retrace.summary")),
    vscode.commands.registerCommand("retrace.pickRecording", async () => (await pickRecording())?.fsPath),
    vscode.window.registerCustomEditorProvider("retrace.summary", new SummaryEditor()),
    vscode.debug.registerDebugAdapterDescriptorFactory("retrace", new AdapterFactory()),
    vscode.debug.registerDebugConfigurationProvider("retrace", new ConfigurationProvider()),
  );
}

export function deactivate(): void {
  summaries.clear();
}
