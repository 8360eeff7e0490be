// Scores http-cache-tests results the way the suite's own lib/display.mjs
// (determineTestResult) does: a test whose dependency did not pass counts
// as failed; required tests (kind 'required' or unset) are counted.
// Usage: node cache-tests-score.mjs PKGDIR RESULTS.json
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const [pkg, resultsFile] = process.argv.slice(2)
const imp = p => import(pathToFileURL(path.join(pkg, p)).href)
const tests = (await imp('tests/index.mjs')).default
tests.push((await imp('tests/surrogate-control.mjs')).default)
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))

const byId = new Map()
for (const suite of tests) for (const t of suite.tests) byId.set(t.id, { ...t, suite: suite.id })

// Mirrors lib/display.mjs determineTestResult (which imports browser-only
// modules, so it cannot be loaded in node).
function outcome (id) {
  const test = byId.get(id)
  const result = results[id]
  if (result === undefined) return 'untested'
  if (test.depends_on !== undefined) {
    for (const dep of test.depends_on) {
      if (!['pass', 'yes'].includes(outcome(dep))) return 'dependency_fail'
    }
  }
  if (result[0] === 'Setup') return result[1] === 'retry' ? 'retry' : 'setup_fail'
  if (result === false && result[0] !== 'Assertion') return 'harness_fail'
  const kind = test.kind || 'required'
  if (kind === 'required') return result === true ? 'pass' : 'fail'
  if (kind === 'optimal') return result === true ? 'pass' : 'optional_fail'
  if (kind === 'check') return result === true ? 'yes' : 'no'
  throw new Error(`unrecognised test kind ${test.kind}`)
}

let required = 0
let passed = 0
const failed = []
for (const [id, t] of byId) {
  if (t.browser_only) continue
  const o = outcome(id)
  if ((t.kind || 'required') === 'required') {
    required++
    if (o === 'pass') passed++
    else failed.push(`${t.suite}/${id}: ${o}`)
  } else if (t.kind === 'optimal' && o !== 'pass') {
    failed.push(`${t.suite}/${id} (optimal): ${o}`)
  } else if (t.kind === 'check') {
    failed.push(`${t.suite}/${id} (check): ${o}`)
  }
}
console.log(JSON.stringify({ required, passed, notes: failed }))
