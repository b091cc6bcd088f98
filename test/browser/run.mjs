// Runs scenarios of the browser test's page in Debian's chromium and
// prints what each saw as JSON on stdout. test/e2e/browser_test.go runs it:
//
//   node run.mjs '{"runs":[{"scenario":"workflow","page":"127.0.0.1:5173","params":{...}}, ...]}'
//
// The page (dist/page.js, bundled by esbuild from src/page.ts) is served
// from each run's `page` address, which is the origin kontakt is
// configured to allow, or another one for the refused-origin scenario.
// One browser serves every run, each in a fresh context: a launch is the
// slowest step on a busy machine.
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const { runs, executablePath = "/usr/bin/chromium" } = JSON.parse(process.argv[2]);

const files = {
  "/": ["text/html; charset=utf-8", join(here, "index.html")],
  "/page.js": ["text/javascript; charset=utf-8", join(here, "dist", "page.js")],
};
const serve = async (req, res) => {
  const f = files[new URL(req.url, "http://x").pathname];
  if (!f) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": f[0] }).end(await readFile(f[1]));
};
const servers = [];
for (const addr of new Set(runs.map((r) => r.page))) {
  const [host, port] = addr.split(":");
  const server = createServer(serve);
  await new Promise((resolve, reject) => server.once("error", reject).listen(Number(port), host, resolve));
  servers.push(server);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    // The TLS scenario's certificate is made by the test.
    "--ignore-certificate-errors",
  ],
});
let status = 0;
try {
  const results = [];
  for (const { scenario, page: pageAddr, params } of runs) {
    const started = Date.now();
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const console_ = [];
    page.on("console", (m) => console_.push(m.text()));
    page.on("pageerror", (e) => console_.push(String(e)));
    await page.goto(`http://${pageAddr}/`);
    await page.waitForFunction(() => window.kontakt !== undefined, null, { timeout: 30000 });
    const result = await page.evaluate(([name, p]) => window.kontakt[name](p), [scenario, params]);
    results.push({ result, console: console_, ms: Date.now() - started });
    await context.close();
  }
  process.stdout.write(JSON.stringify(results) + "\n");
} catch (e) {
  process.stderr.write(`browser test driver: ${e?.stack ?? e}\n`);
  status = 1;
} finally {
  await browser.close();
  for (const s of servers) s.close();
}
process.exit(status);
