// Loads one page in Debian's Chromium (headless, driven by playwright-core over the DevTools
// protocol) and prints what the browser saw as one JSON line: the HTTP status, the page text,
// and the TLS details of the main response (`securityDetails` of Network.responseReceived).
//   node chromium.mjs --url URL --user-data-dir DIR --screenshot FILE [--home DIR]
// --home sets HOME for the browser, whose NSS database ($HOME/.pki/nssdb) holds client
// certificates. Trust anchors and certificate selection come from the managed policies the
// caller installed.
import { parseArgs } from "node:util";
import { createRequire } from "node:module";

const { values: o } = parseArgs({
  options: {
    url: { type: "string" },
    "user-data-dir": { type: "string" },
    screenshot: { type: "string" },
    home: { type: "string" },
    "playwright-core": { type: "string" },
    "timeout-ms": { type: "string", default: "30000" },
  },
});
const { chromium } = createRequire(import.meta.url)(o["playwright-core"]);

// The flags this machine needs: no sandbox as root, and nothing that reaches for the network.
const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const context = await chromium.launchPersistentContext(o["user-data-dir"], {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: FLAGS,
  env: { ...process.env, ...(o.home ? { HOME: o.home } : {}) },
  timeout: Number(o["timeout-ms"]),
});
try {
  const page = context.pages()[0] ?? await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  let security;
  cdp.on("Network.responseReceived", (event) => {
    if (event.type === "Document" && event.response.url.startsWith(o.url)) {
      security = event.response.securityDetails;
    }
  });
  let result;
  try {
    const response = await page.goto(o.url, { timeout: Number(o["timeout-ms"]) });
    const text = await page.innerText("body");
    await page.screenshot({ path: o.screenshot });
    result = { status: response?.status(), text, security };
  } catch (e) {
    result = { error: e.message.split("\n")[0] };
  }
  process.stdout.write(JSON.stringify(result) + "\n");
} finally {
  await context.close();
}
