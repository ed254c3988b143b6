// Drives Debian's Chromium with playwright-core for server/browser_test.go:
//
//   node drive.mjs <JSON arguments>
//
// arguments: {page, denied, api, stream, key, read, timeoutMs}. It opens
// `page` (served on another loopback origin than agentstream's) and runs its
// window.agentstreamDemo; then it opens `denied`, an origin that is not
// allowed, and tries one fetch from there. It prints one JSON object:
// {"demo": {…what agentstreamDemo returned…}, "denied": "<the error>",
// "console": [...]}, and exits 0; 1 with {"error"} when something failed.
import { chromium } from 'playwright-core'

const args = JSON.parse(process.argv[2])
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox']
})
const console_ = []
let code = 0
let result
try {
  const page = await browser.newPage()
  page.on('console', (m) => console_.push(m.type() + ': ' + m.text()))
  await page.goto(args.page)
  const demo = await page.evaluate((a) => window.agentstreamDemo(a), args)
  await page.goto(args.denied)
  const denied = await page.evaluate(async (a) => {
    try {
      const resp = await fetch(a.api + '/v1/threads', { method: 'POST', headers: { Authorization: 'Bearer ' + a.key, 'Content-Type': 'application/json' }, body: '{}' })
      return 'answered ' + resp.status
    } catch (e) {
      return String(e)
    }
  }, args)
  result = { demo, denied, console: console_ }
} catch (e) {
  code = 1
  result = { error: String(e && e.stack || e), console: console_ }
} finally {
  await browser.close()
}
process.stdout.write(JSON.stringify(result) + '\n')
process.exitCode = code // not process.exit: that could cut stdout short
